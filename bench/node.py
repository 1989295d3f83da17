"""A ``runjobs`` node as a user runs it, on a fresh table and on an analysed one (PostgreSQL).

    python bench/node.py [--runs 3] [--jobs 10000] [--limit 10]

Each run gets a new database, copied from a migrated template whose job table has never been
analysed. ``--jobs`` no-op jobs are bulk-inserted (``insert_all``) into it; for the *analysed*
runs ``VACUUM ANALYZE`` follows, as autovacuum would do after a while. Then ``python -m django
runjobs -q default=LIMIT --verbosity 0`` (bench/settings.py: Django's default database
settings) starts as its own process, and the database is polled until every job is completed.

Printed per mode (medians): jobs/s from the first claim to the last completion (the jobs'
own ``attempted_at`` and ``completed_at``), jobs/s counting the process's start-up, the node's
CPU per job (user + system time of the process while it drained, divided by the jobs) and its
RSS at the end. The target (issue 14): the fresh rate within 10 % of the analysed one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PG_SERVER, wait_started  # noqa: E402
from bench.run import cpu_seconds, rss_mb  # noqa: E402

TEMPLATE = "django_jobs_bench_node_template"
DATABASE = "django_jobs_bench_node"
#: Longest wait for one drain (a hung node fails the run instead of spinning).
DRAIN_TIMEOUT = 300


def admin(sql: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def env_for(database: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_DATABASE_URL": f"{PG_SERVER}/{database}", "PYTHONPATH": str(ROOT)}


def make_template() -> None:
    admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
    admin(f'CREATE DATABASE "{TEMPLATE}"')
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], check=True,
                   cwd=ROOT, env=env_for(TEMPLATE))


INSERT = """
from django.utils.module_loading import import_string
from django_jobs import insert_all
worker = import_string(%r)
insert_all([worker.new({"i": i}) for i in range(%d)])
"""


def run_once(jobs: int, limit: int, analysed: bool, worker: str) -> dict[str, float]:
    admin(f'DROP DATABASE IF EXISTS "{DATABASE}"')
    admin(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE}"')
    env = env_for(DATABASE)
    insert = "import django; django.setup()\n" + INSERT % (worker, jobs)
    subprocess.run([sys.executable, "-c", insert], check=True, cwd=ROOT, env=env)
    url = f"{PG_SERVER}/{DATABASE}"
    with psycopg.connect(url, autocommit=True) as conn:
        if analysed:
            conn.execute("VACUUM ANALYZE django_jobs_job")
        with tempfile.NamedTemporaryFile("w+", prefix="bench_node_", suffix=".log") as log:
            started = time.monotonic()
            node = subprocess.Popen(
                [sys.executable, "-m", "django", "runjobs", "-q", f"default={limit}",
                 "--node", "bench-node", "--verbosity", "0"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = started + DRAIN_TIMEOUT
                while True:
                    done = conn.execute("SELECT count(*) FROM django_jobs_job "
                                        "WHERE state = 'completed'").fetchone()[0]
                    if done == jobs:
                        break
                    if node.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{done} of {jobs} done; node output:\n"
                                           + open(log.name).read())
                    time.sleep(0.02)
                wall = time.monotonic() - started
                cpu, rss = cpu_seconds(node.pid), rss_mb(node.pid)
            finally:
                node.kill()
                node.wait(timeout=30)
        span = conn.execute("SELECT extract(epoch FROM max(completed_at) - min(attempted_at)) "
                            "FROM django_jobs_job").fetchone()[0]
    # The process's CPU includes its start-up (Django, imports): measured apart, subtracted.
    return {"rate": jobs / float(span), "rate_with_startup": jobs / wall,
            "cpu_total": cpu, "rss": rss}


def startup_cpu() -> float:
    """CPU seconds of a runjobs process from exec to idle with nothing to do."""
    admin(f'DROP DATABASE IF EXISTS "{DATABASE}"')
    admin(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE}"')
    with tempfile.NamedTemporaryFile("w+", prefix="bench_node_", suffix=".log") as log:
        node = subprocess.Popen([sys.executable, "-m", "django", "runjobs", "-q", "default=10",
                                 "--node", "bench-idle"], cwd=ROOT, env=env_for(DATABASE),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_started(node, log.name)
            time.sleep(1.0)
            return cpu_seconds(node.pid)
        finally:
            node.kill()
            node.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--worker", default="bench.workers.NoopWorker",
                        help="dotted path of the jobs' worker (bench.workers.RecordedNoopWorker: "
                             "the cost of recording results)")
    options = parser.parse_args()
    make_template()
    base_cpu = statistics.median(startup_cpu() for _ in range(2))
    figures: dict[str, list[dict]] = {"fresh": [], "analysed": []}
    for run in range(options.runs):
        for mode in figures:  # interleaved: drift on a shared machine hits both alike
            result = run_once(options.jobs, options.limit, analysed=mode == "analysed",
                              worker=options.worker)
            result["cpu_per_job"] = (result["cpu_total"] - base_cpu) / options.jobs * 1e6
            figures[mode].append(result)
            print(f"run {run + 1} {mode:>8}: {result['rate']:,.0f} jobs/s, "
                  f"{result['cpu_per_job']:.0f} µs CPU/job, {result['rss']:.1f} MB",
                  file=sys.stderr)
    print(f"\nrunjobs -q default={options.limit}, {options.jobs:,} jobs of {options.worker}, "
          f"median of {options.runs} (load average {os.getloadavg()[0]:.2f}):\n")
    print("| figure | fresh table | analysed table |\n| --- | ---: | ---: |")
    rows = (("jobs/s, first claim to last completion", "rate", "{:,.0f}"),
            ("jobs/s, counting start-up", "rate_with_startup", "{:,.0f}"),
            ("node CPU per job (µs)", "cpu_per_job", "{:.0f}"),
            ("node RSS at the end (MB)", "rss", "{:.1f}"))
    for label, key, form in rows:
        values = [form.format(statistics.median(r[key] for r in figures[mode]))
                  for mode in figures]
        print(f"| {label} | {' | '.join(values)} |")
    ratio = (statistics.median(r["rate"] for r in figures["fresh"])
             / statistics.median(r["rate"] for r in figures["analysed"]))
    print(f"\nfresh / analysed: {ratio:.2f} (target: at least 0.90)")
    admin(f'DROP DATABASE IF EXISTS "{DATABASE}"')
    admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')


if __name__ == "__main__":
    main()
