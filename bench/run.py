"""Runtime benchmark: throughput, insert-to-perform latency, idle cost, fetch time vs table size.

    python bench/run.py [--runs 3] [--idle-runs 2] [--big-rows N] [--engines sqlite,...]

Each engine (sqlite, postgresql, postgresql+prepared, as in bench/insert.py) is measured in a
subprocess of its own, on a fresh database, with no-op jobs and one node:

* throughput: 10,000 jobs inserted beforehand, an in-process ``Node`` running one queue at
  limit 10 (plugins on); jobs/s from ``node.start()`` until no job of the queue is available or
  executing (an EXISTS poll every 20 ms through the two partial indexes), checked afterwards
  to be 10,000 completed rows. Also printed: this process's CPU time per job over the same
  span (node threads plus the poll), which the machine's other load disturbs far less;
* latency: an idle node (in this process); 200 jobs inserted one at a time, 5-20 ms apart
  (random, seeded), after 5 warm-up jobs. Latency = ``time.monotonic()`` when ``perform``
  starts minus ``time.monotonic()`` just after the insert returned (committed). On PostgreSQL
  the inserts come from a separate process, so the NOTIFY crosses processes as in production;
  on SQLite they come from this process's main thread, since the in-process wake-up is the
  only one SQLite has (another process would be found by the 0.2 s poll);
* idle cost: ``python -m django runjobs`` (settings: bench/settings.py) with 4 queues at
  limit 10 and an empty table; after start-up plus 2 s, CPU time over 10 s from
  /proc/<pid>/stat (utime + stime) as % of one core, and VmRSS from /proc/<pid>/status;
* fetch time: median time of ``engine.fetch_jobs(queue, 10, ...)`` with ~1,000 available jobs,
  (a) alone and (b) with N completed rows of the same queue in the table (inserted by one
  ``INSERT ... SELECT`` from ``generate_series`` / a recursive CTE, then ANALYZE; on
  PostgreSQL VACUUM ANALYZE, as autovacuum would have done). N is --big-rows: by default
  1,000,000 on PostgreSQL and 200,000 on SQLite; 0 skips (b).

Every figure is the median of --runs runs (idle cost: of --idle-runs runs, 10 s each; fetch:
of at least 5 rounds), because the machine is shared and single runs are noisy; the min-max
spread is printed too. Defaults take about 3-4 minutes for the three engines. Targets apply
to PostgreSQL on the 2-core reference machine; SQLite figures are for information. Peers'
throughput on that machine: pgqueuer 1.6 ~1,650 jobs/s, oban-py 0.7 ~650, procrastinate 3.10
~260; a bare psycopg loop claiming 10 with SKIP LOCKED and completing them in one UPDATE
~5,800.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (ROOT, database_urls, ensure_postgres_database, median, setup_django,
                          truncate_jobs, wait_started)

THROUGHPUT_JOBS = 10_000
QUEUE = "default"
LIMIT = 10
#: Throughput: how often the main thread checks whether all jobs are done. Each check is a
#: query that competes with the node for the GIL and the database, so not too often; the
#: error it adds is at most one interval (20 ms of a ~3 s run: < 1 %).
POLL_INTERVAL = 0.02
LATENCY_SAMPLES, LATENCY_WARMUP = 200, 5
IDLE_QUEUES, IDLE_SECONDS, IDLE_SETTLE = 4, 10.0, 2.0
FETCH_AVAILABLE, FETCH_CALLS = 1_000, 50
#: Fetch rounds (each the median of FETCH_CALLS calls) are cheap: at least this many.
FETCH_MIN_ROUNDS = 5
BIG_ROWS_DEFAULT = {"postgresql": 1_000_000, "sqlite": 200_000}
#: Fetch with the big table must stay within this factor of the fetch without it.
FETCH_GROWTH_LIMIT = 1.5

TARGETS = {  # (value, higher is better)
    "throughput": (3_000, True),
    "recorded_ratio": (0.85, True),
    "latency_p50": (5.0, False),
    "latency_p95": (10.0, False),
    "idle_cpu": (2.0, False),
    "idle_rss": (80.0, False),
}


#: The engine measured by this process, as named in the report (set by main()).
LABEL = ""


def log(message: str) -> None:
    print(f"  [{LABEL}] {message}", file=sys.stderr, flush=True)


def execute(sql: str, params: list | None = None) -> list:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def analyze() -> None:
    from django.db import connection

    execute("VACUUM ANALYZE django_jobs_job" if connection.vendor == "postgresql"
            else "ANALYZE")


# -- throughput ---------------------------------------------------------------------------------

def throughput_once(recorded: bool = False) -> tuple[float, float]:
    """(jobs/s, CPU µs of this process per job) of one run; with ``recorded``, of a worker
    whose return value is recorded with each completion."""
    import django_jobs
    from bench.workers import NoopWorker, RecordedNoopWorker
    from django_jobs.models import Job
    from django_jobs.runtime.node import Node

    worker = RecordedNoopWorker if recorded else NoopWorker
    truncate_jobs()
    django_jobs.insert_all([worker.new({"i": i}) for i in range(THROUGHPUT_JOBS)])
    analyze()
    pending = ("SELECT EXISTS (SELECT 1 FROM django_jobs_job WHERE state = 'available' "
               "AND queue = %s) OR EXISTS (SELECT 1 FROM django_jobs_job "
               "WHERE state = 'executing' AND queue = %s)")
    node = Node(queues={QUEUE: LIMIT}, name="bench-throughput", grace=5)
    cpu_before = os.times()
    started = time.perf_counter()
    node.start()
    try:
        while execute(pending, [QUEUE, QUEUE])[0][0]:
            if time.perf_counter() - started > 300:
                raise RuntimeError("throughput run did not finish in 300 s")
            time.sleep(POLL_INTERVAL)
        elapsed = time.perf_counter() - started
        cpu_after = os.times()
    finally:
        node.stop()
    completed = Job.objects.filter(state="completed").count()
    if completed != THROUGHPUT_JOBS:
        raise RuntimeError(f"{completed} of {THROUGHPUT_JOBS} jobs completed")
    if recorded and Job.objects.filter(meta__recorded=True).count() != THROUGHPUT_JOBS:
        raise RuntimeError("not every recorded job has its result")
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return THROUGHPUT_JOBS / elapsed, cpu / THROUGHPUT_JOBS * 1e6


# -- latency ------------------------------------------------------------------------------------

def insert_latency_jobs(count: int, seed: int) -> list[tuple[int, float]]:
    """Enqueue ``count`` LatencyWorker jobs one at a time, 5-20 ms apart; (id, time after the
    insert returned) for each."""
    from bench.workers import LatencyWorker

    rng = random.Random(seed)
    inserted = []
    for i in range(count):
        time.sleep(rng.uniform(0.005, 0.020))
        job = LatencyWorker.enqueue({"i": i})
        inserted.append((job.pk, time.monotonic()))
    return inserted


def latency_once(url: str, seed: int, cross_process: bool) -> list[float]:
    """Latencies in ms of LATENCY_SAMPLES jobs (after the warm-up ones)."""
    from bench.workers import STARTED
    from django_jobs.runtime.node import Node

    truncate_jobs()
    STARTED.clear()
    node = Node(queues={QUEUE: LIMIT}, name="bench-latency", grace=5)
    node.start()
    try:
        time.sleep(1.0)  # idle: lease taken, LISTEN in place, first fetches done
        count = LATENCY_WARMUP + LATENCY_SAMPLES
        if cross_process:
            out = subprocess.run([sys.executable, __file__, "--db", url, "--insert-latency-jobs",
                                  str(count), "--seed", str(seed)],
                                 check=True, capture_output=True, text=True, cwd=ROOT)
            inserted = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            inserted = insert_latency_jobs(count, seed)
        deadline = time.monotonic() + 30
        while not all(pk in STARTED for pk, _ in inserted):
            if time.monotonic() > deadline:
                missing = sum(pk not in STARTED for pk, _ in inserted)
                raise RuntimeError(f"{missing} latency jobs never started")
            time.sleep(0.01)
    finally:
        node.stop()
    return [(STARTED[pk] - at) * 1000 for pk, at in inserted[LATENCY_WARMUP:]]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- idle cost ----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmRSS")


def idle_once(url: str) -> tuple[float, float]:
    """(CPU % of one core, RSS in MB) of an idle runjobs process."""
    truncate_jobs()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings",
           "BENCH_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    queues = [arg for i in range(IDLE_QUEUES) for arg in ("-q", f"idle{i}={LIMIT}")]
    with tempfile.NamedTemporaryFile("w+", prefix="bench_runjobs_", suffix=".log") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "runjobs", *queues, "--node", "bench-idle",
             "--grace", "5"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_started(process, output.name)
            time.sleep(IDLE_SETTLE)
            wall0, cpu0 = time.monotonic(), cpu_seconds(process.pid)
            time.sleep(IDLE_SECONDS)
            wall1, cpu1 = time.monotonic(), cpu_seconds(process.pid)
            rss = rss_mb(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return (cpu1 - cpu0) / (wall1 - wall0) * 100, rss


# -- fetch time ---------------------------------------------------------------------------------

def insert_completed_rows(count: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from bench.workers import NoopWorker

    columns = ("state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority, "
               "attempted_by, inserted_at, scheduled_at, attempted_at, completed_at, unique_key, "
               "unique_states")
    if connection.vendor == "postgresql":
        execute(f"""
            INSERT INTO django_jobs_job ({columns})
            SELECT 'completed', %s, %s, jsonb_build_object('i', g), '{{}}'::jsonb, '[]'::jsonb,
                   '[]'::jsonb, 1, 20, 0, '["bench", "old"]'::jsonb, t, t, t, t, NULL, 0
            FROM generate_series(1, %s) AS g,
                 LATERAL (SELECT now() - interval '1 day' + g * interval '1 ms' AS t) AS at
        """, [QUEUE, NoopWorker.worker_path, count])
    else:
        at = connection.ops.adapt_datetimefield_value(timezone.now())
        execute(f"""
            WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < %s)
            INSERT INTO django_jobs_job ({columns})
            SELECT 'completed', %s, %s, json_object('i', x), '{{}}', '[]', '[]', 1, 20, 0,
                   '["bench", "old"]', %s, %s, %s, %s, NULL, 0
            FROM g
        """, [count, QUEUE, NoopWorker.worker_path, at, at, at, at])


def fetch_round(engine) -> float:
    """Put the claimed jobs back, then the median time in ms of FETCH_CALLS fetches of 10."""
    from django.utils import timezone

    execute("UPDATE django_jobs_job SET state = 'available', attempt = 0, attempted_at = NULL, "
            "attempted_by = NULL WHERE state = 'executing'")
    analyze()
    attempted_by = ["bench-fetch", str(uuid.uuid4())]
    times = []
    for _ in range(FETCH_CALLS):
        now = timezone.now()
        started = time.perf_counter()
        jobs = engine.fetch_jobs(QUEUE, 10, attempted_by, now)
        times.append((time.perf_counter() - started) * 1000)
        if len(jobs) != 10:
            raise RuntimeError(f"fetch returned {len(jobs)} jobs")
    return median(times)


def fetch_times(runs: int, big_rows: int) -> dict:
    import django_jobs
    from bench.workers import NoopWorker
    from django_jobs.engines import get_engine

    engine = get_engine()
    truncate_jobs()
    django_jobs.insert_all([NoopWorker.new({"i": i}) for i in range(FETCH_AVAILABLE)])
    rounds = max(runs, FETCH_MIN_ROUNDS)
    result = {"fetch_small": [fetch_round(engine) for _ in range(rounds)], "big_rows": big_rows}
    if big_rows:
        log(f"inserting {big_rows:,} completed rows")
        started = time.perf_counter()
        insert_completed_rows(big_rows)
        analyze()
        result["big_insert_s"] = time.perf_counter() - started
        result["fetch_big"] = [fetch_round(engine) for _ in range(rounds)]
    truncate_jobs()
    return result


# -- one engine ---------------------------------------------------------------------------------

def measure(url: str, runs: int, idle_runs: int, big_rows: int | None) -> dict:
    from django.db import connection

    vendor = connection.vendor
    result: dict = {"runs": runs, "idle_runs": idle_runs}
    started = time.perf_counter()
    result["throughput"], result["cpu_per_job"] = [], []
    result["recorded"], result["recorded_ratio"] = [], []
    for i in range(runs):
        rate, cpu = throughput_once()
        result["throughput"].append(rate)
        result["cpu_per_job"].append(cpu)
        log(f"throughput run {i + 1}: {rate:,.0f} jobs/s, {cpu:.0f} µs CPU per job")
        # Right after the plain run, so that both see the same machine.
        recorded_rate, _ = throughput_once(recorded=True)
        result["recorded"].append(recorded_rate)
        result["recorded_ratio"].append(recorded_rate / rate)
        log(f"recorded run {i + 1}: {recorded_rate:,.0f} jobs/s "
            f"(x{recorded_rate / rate:.2f} of the plain run)")

    cross_process = vendor == "postgresql"
    result["latency_mode"] = "separate process" if cross_process else "in-process"
    result["latency_p50"], result["latency_p95"] = [], []
    for i in range(runs):
        samples = latency_once(url, seed=i, cross_process=cross_process)
        result["latency_p50"].append(percentile(samples, 0.50))
        result["latency_p95"].append(percentile(samples, 0.95))
        log(f"latency run {i + 1}: p50 {result['latency_p50'][-1]:.2f} ms, "
            f"p95 {result['latency_p95'][-1]:.2f} ms, max {max(samples):.1f} ms")

    result["idle_cpu"], result["idle_rss"] = [], []
    for i in range(idle_runs):
        cpu, rss = idle_once(url)
        result["idle_cpu"].append(cpu)
        result["idle_rss"].append(rss)
        log(f"idle run {i + 1}: CPU {cpu:.2f} % of one core, RSS {rss:.1f} MB")

    if big_rows is None:
        big_rows = BIG_ROWS_DEFAULT[vendor]
    result.update(fetch_times(runs, big_rows))
    rounded = lambda values: ", ".join(f"{v:.3f}" for v in values or [])  # noqa: E731
    log(f"fetch (ms, per round): {rounded(result['fetch_small'])}; with {big_rows:,} completed "
        f"rows: {rounded(result.get('fetch_big'))}")
    result["seconds"] = time.perf_counter() - started
    return result


# -- report -------------------------------------------------------------------------------------

def verdict(key: str, value: float) -> str:
    target, higher_is_better = TARGETS[key]
    if higher_is_better:
        ok = value >= target
    else:
        ok = value < target if key.startswith("idle") else value <= target
    return "meets target" if ok else "BELOW TARGET"


def target_text(key: str) -> str:
    target, higher_is_better = TARGETS[key]
    op = ">=" if higher_is_better else "<" if key.startswith("idle") else "<="
    return f"{op} {target:,g}"


def revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "django_jobs"],
                               capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {rev}" + (" + uncommitted changes in django_jobs/" if dirty else "")


def report(results: dict[str, dict], runs: int, idle_runs: int) -> None:
    print(f"\nRuntime benchmark ({revision()}): no-op jobs, one node; median of {runs} runs "
          f"(idle: {idle_runs} runs of {IDLE_SECONDS:.0f} s; fetch: at least {FETCH_MIN_ROUNDS} "
          f"rounds of {FETCH_CALLS} calls), spread = "
          f"min-max of the runs.\nTargets apply to PostgreSQL; SQLite is for information. "
          f"BELOW TARGET = target not met.")
    header = f"{'engine':<21}{'figure':<52}{'median':>10}  {'spread':<17}{'target':<11}verdict"
    print(header)
    print("-" * len(header))
    for vendor, r in results.items():
        is_pg = vendor.startswith("postgresql")
        rows = [
            ("throughput", f"throughput, {THROUGHPUT_JOBS:,} jobs, limit {LIMIT} (jobs/s)",
             "{:,.0f}"),
            ("cpu_per_job", "  node process CPU per job (µs; steadier than jobs/s)", "{:.0f}"),
            ("recorded", "throughput, recorded no-op worker (jobs/s)", "{:,.0f}"),
            ("recorded_ratio", "  recorded / plain, run by run", "{:.2f}"),
            ("latency_p50", f"latency insert->perform p50 (ms, {r['latency_mode']})", "{:.2f}"),
            ("latency_p95", f"latency insert->perform p95 (ms, {r['latency_mode']})", "{:.2f}"),
            ("idle_cpu", f"idle runjobs, {IDLE_QUEUES} queues x {LIMIT}: CPU (% of a core)",
             "{:.2f}"),
            ("idle_rss", "idle runjobs: RSS (MB)", "{:.1f}"),
        ]
        for key, label, fmt in rows:
            values = r[key]
            value = median(values)
            spread = f"{fmt.format(min(values))}-{fmt.format(max(values))}"
            target = target_text(key) if is_pg and key in TARGETS else "(info)"
            note = verdict(key, value) if is_pg and key in TARGETS else "-"
            print(f"{vendor:<21}{label:<52}{fmt.format(value):>10}  {spread:<17}{target:<11}"
                  f"{note}")
        small = median(r["fetch_small"])
        spread = f"{min(r['fetch_small']):.3f}-{max(r['fetch_small']):.3f}"
        print(f"{vendor:<21}{f'fetch 10 of {FETCH_AVAILABLE:,} available (ms)':<52}"
              f"{small:>10.3f}  {spread:<17}{'-':<11}-")
        if r.get("fetch_big"):
            big = median(r["fetch_big"])
            ratio = big / small
            spread = f"{min(r['fetch_big']):.3f}-{max(r['fetch_big']):.3f}"
            label = f"  same + {r['big_rows']:,} completed rows (ms; x{ratio:.2f})"
            target = f"<= x{FETCH_GROWTH_LIMIT}" if is_pg else "(info)"
            note = ("meets target" if ratio <= FETCH_GROWTH_LIMIT else "BELOW TARGET") \
                if is_pg else ("flat" if ratio <= FETCH_GROWTH_LIMIT else "grows")
            print(f"{vendor:<21}{label:<52}{big:>10.3f}  {spread:<17}{target:<11}{note}")
        else:
            print(f"{vendor:<21}{'  same + completed rows':<52}{'skipped':>10}  (--big-rows 0)")
    print()
    for vendor, r in results.items():
        extra = (f", {r['big_rows']:,} completed rows inserted + analyzed in "
                 f"{r['big_insert_s']:.1f} s" if r.get("big_insert_s") else "")
        print(f"{vendor}: measured in {r['seconds']:.0f} s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-runs", type=int, default=2,
                        help=f"idle measurements ({IDLE_SECONDS:.0f} s each; default 2)")
    parser.add_argument("--big-rows", type=int, default=None,
                        help="completed rows for the fetch test (default: 1,000,000 on "
                             "PostgreSQL, 200,000 on SQLite; 0 skips it)")
    parser.add_argument("--engines", default="sqlite,postgresql,postgresql+prepared",
                        help="comma-separated subset of sqlite, postgresql, postgresql+prepared")
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--insert-latency-jobs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db:
        global LABEL
        LABEL = ("sqlite" if args.db.startswith("sqlite") else
                 "postgresql+prepared" if "prepare_threshold" in args.db else "postgresql")
        setup_django(args.db)
        if args.insert_latency_jobs:
            print(json.dumps(insert_latency_jobs(args.insert_latency_jobs, args.seed)))
        else:
            print(json.dumps(measure(args.db, args.runs, args.idle_runs, args.big_rows)))
        return

    started = time.perf_counter()
    load = os.getloadavg()
    wanted = args.engines.split(",")
    urls = database_urls()
    unknown = set(wanted) - set(urls)
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}")
    results, failed = {}, []
    for vendor, url in urls.items():
        if vendor not in wanted:
            continue
        if vendor.startswith("postgresql"):
            problem = ensure_postgres_database()
            if problem:
                print(f"{vendor}: skipped, server not reachable ({problem})")
                continue
        print(f"measuring {vendor} ...", file=sys.stderr, flush=True)
        argv = ["--runs", str(args.runs), "--idle-runs", str(args.idle_runs)]
        if args.big_rows is not None:
            argv += ["--big-rows", str(args.big_rows)]
        out = subprocess.run([sys.executable, __file__, "--db", url, *argv],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if out.returncode:
            failed.append(vendor)  # its traceback went to stderr above
            continue
        results[vendor] = json.loads(out.stdout.strip().splitlines()[-1])
    # The SQLite database (up to --big-rows rows) lives in a temporary directory of its own.
    shutil.rmtree(os.path.dirname(urls["sqlite"].removeprefix("sqlite:///")), ignore_errors=True)
    report(results, args.runs, args.idle_runs)
    for vendor in failed:
        print(f"{vendor}: FAILED (see the error above); no figures")
    end_load = os.getloadavg()
    print(f"total {time.perf_counter() - started:.0f} s; load average (1 min) "
          f"{load[0]:.2f} at start, {end_load[0]:.2f} at end, on {os.cpu_count()} cores")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
