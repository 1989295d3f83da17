"""Chain benchmark: chained jobs next to the same jobs unchained, in one run.

    python bench/chain.py [--runs 3] [--engines postgresql,sqlite]

Each engine is measured in a subprocess of its own, on a fresh database, with one node in
that process (an in-process ``Node``, plugins on) running one queue at limit 10:

* unchained: 10,000 no-op jobs inserted beforehand, jobs/s from ``node.start()`` until none is
  available, executing or waiting;
* chained: the same 10,000 jobs spread over 100 chain keys (``chain = {"by": {"args":
  "key"}}``), inserted in one ``insert_all`` (so 100 heads are released at once and the rest
  wait), measured the same way; checked afterwards: every job completed, and within each chain
  the jobs started in insertion order, none before its predecessor ended;
* release latency: one chain of 300 jobs; for every job but the first, the time from the end
  of its predecessor's ``perform`` to the start of its own (``time.monotonic()`` in the
  worker): the ack, the release in the ack's transaction, the wake-up and the fetch. Beside
  it, for information, the same with 10 chains of 100 jobs at limit 10: every slot busy, so a
  release also waits for the acker to finish the acks before it. (In the throughput run, with
  100 chains for 10 slots, a released job also queues behind the other chains' heads: that
  wait is the queue's, not the release's.)

Runs alternate (unchained, chained, unchained, ...) so that both see the same machine; the
figures are medians of --runs. Targets (PostgreSQL): chained at least 60 % of unchained;
release latency p50 at most 10 ms.
"""

from __future__ import annotations

import itertools
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (drain, load_line, measure_engines, print_table, setup_django,
                          truncate_jobs)

JOBS, CHAINS, LIMIT, QUEUE = 10_000, 100, 10, "default"
TARGET_RATIO, TARGET_P50_MS = 0.60, 10.0


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE django_jobs_job" if connection.vendor == "postgresql"
                       else "ANALYZE")


def run_once(chained: bool, chains: int = CHAINS, jobs: int = JOBS) -> dict:
    """One run: jobs/s, and (chained) the release latencies in ms."""
    import django_jobs
    from bench import workers
    from django_jobs.models import Job

    worker = workers.ChainedNoopWorker if chained else workers.TimedNoopWorker
    truncate_jobs()
    workers.TIMES.clear()
    django_jobs.insert_all([worker.new({"key": i % chains, "seq": i // chains})
                            for i in range(jobs)])
    analyze()
    pending = ("SELECT EXISTS (SELECT 1 FROM django_jobs_job WHERE state IN "
               "('available', 'executing', 'suspended', 'scheduled'))")
    elapsed = drain({QUEUE: LIMIT}, "bench-chain", pending, 600)
    done = Job.objects.filter(state="completed").count()
    if done != jobs:
        raise RuntimeError(f"{done} of {jobs} jobs completed")
    result = {"rate": jobs / elapsed}
    if chained:
        result["latency_ms"] = release_latencies(workers.TIMES)
    return result


def release_latencies(times: dict) -> list[float]:
    """Per chain, in insertion order: successor's start minus predecessor's end (ms), after
    checking that no job started before its predecessor ended."""
    by_chain: dict[int, list] = {}
    for (key, seq), span in times.items():
        by_chain.setdefault(key, []).append((seq, *span))
    latencies = []
    for key, runs in by_chain.items():
        runs.sort()
        if [seq for seq, *_ in runs] != list(range(len(runs))):
            raise RuntimeError(f"chain {key}: runs missing or repeated")
        for (_, _, end), (seq, start, _) in itertools.pairwise(runs):
            if start < end:
                raise RuntimeError(f"chain {key}: job {seq} started before job {seq - 1} ended")
            latencies.append((start - end) * 1000)
    return latencies


def measure(runs: int) -> dict:
    result = {"plain": [], "chained": [], "ratio": [], "p50": [], "p95": [], "busy_p50": []}
    for i in range(runs):
        plain = run_once(chained=False)["rate"]
        chained = run_once(chained=True)
        latencies = sorted(run_once(chained=True, chains=1, jobs=300)["latency_ms"])
        busy = sorted(run_once(chained=True, chains=LIMIT, jobs=LIMIT * 100)["latency_ms"])
        result["plain"].append(plain)
        result["chained"].append(chained["rate"])
        result["ratio"].append(chained["rate"] / plain)
        result["p50"].append(latencies[len(latencies) // 2])
        result["p95"].append(latencies[int(len(latencies) * 0.95)])
        result["busy_p50"].append(busy[len(busy) // 2])
        print(f"  run {i + 1}: plain {plain:,.0f} jobs/s, chained {chained['rate']:,.0f} "
              f"jobs/s (x{chained['rate'] / plain:.2f}); release latency p50 "
              f"{result['p50'][-1]:.2f} ms, p95 {result['p95'][-1]:.2f} ms (one chain), p50 "
              f"{result['busy_p50'][-1]:.2f} ms (10 chains, every slot busy)",
              file=sys.stderr, flush=True)
    return result


def report(results: dict, runs: int) -> None:
    print(f"\nChain benchmark: {JOBS:,} no-op jobs, {CHAINS} chain keys, queue limit {LIMIT}, "
          f"one in-process node; median of {runs} runs (spread = min-max).")
    rows = [("plain", "unchained (jobs/s)", "{:,.0f}", None),
            ("chained", "chained, 100 keys (jobs/s)", "{:,.0f}", None),
            ("ratio", "  chained / unchained, run by run", "{:.2f}", (TARGET_RATIO, True)),
            ("p50", "release latency p50 (ms; one chain)", "{:.2f}", (TARGET_P50_MS, False)),
            ("p95", "release latency p95 (ms; one chain)", "{:.2f}", None),
            ("busy_p50", "  p50 with 10 chains, every slot busy (ms)", "{:.2f}", None)]
    print_table(results, rows, width=46)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="postgresql,sqlite")
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db:
        setup_django(args.db)
        print(json.dumps(measure(args.runs)))
        return
    started, load = time.perf_counter(), os.getloadavg()
    results = measure_engines(__file__, args.engines, ["--runs", str(args.runs)])
    report(results, args.runs)
    print(load_line(started, load))


if __name__ == "__main__":
    main()
