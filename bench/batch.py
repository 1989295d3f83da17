"""Batch benchmark: members of batches next to the same jobs without a batch, in one run.

    python bench/batch.py [--runs 2] [--jobs 100000] [--engines postgresql,sqlite]

Each engine is measured in a subprocess of its own, on a fresh database, with one in-process
node (plugins on) running one queue at limit 10, jobs inserted beforehand in one insert_all:

* plain: --jobs no-op jobs of a plain worker;
* one batch: the same number of no-op members of one batch (a ``handle_completed`` handler);
* many batches: the same number of members in batches of 100;
* callbacks go to a queue of their own (``batch_callback_queue``), run by the same node at
  limit 10, as docs/batches.md advises: in the members' queue they would wait their turn
  behind every member inserted before them;
* callback latency (from the many-batches run): per batch, from the end of its last member's
  ``perform`` to the start of its ``handle_completed`` (``time.monotonic()`` in the worker):
  the ack that finishes the batch, the callback's insert in that transaction, the wake-up and
  the fetch.

Each run is checked: every job completed, every batch's ``handle_completed`` ran exactly once.
Runs alternate (plain, one batch, many batches, ...) so that all see the same machine; figures
are medians of --runs. Targets (PostgreSQL): both batch rates at least 85 % of the plain rate;
callback latency p50 at most 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (drain, load_line, measure_engines, print_table, setup_django,
                          truncate_jobs)

LIMIT, QUEUE, BATCH_SIZE = 10, "default", 100
#: The callbacks' own queue (as docs/batches.md advises): they do not wait behind members.
CALLBACKS = "callbacks"
TARGET_RATIO, TARGET_P50_MS = 0.85, 100.0


def run_once(kind: str, jobs: int) -> dict:
    import django_jobs
    from bench import workers
    from django.db import connection
    from django_jobs.models import Batch, Job

    truncate_jobs()
    Batch.objects.all().delete()
    workers.BATCH_TIMES.clear()
    if kind == "plain":
        built = [workers.NoopWorker.new({"i": i}) for i in range(jobs)]
    elif kind == "one batch":
        built = workers.BatchNoopWorker.new_batch([{"i": i} for i in range(jobs)],
                                                  batch_callback_queue=CALLBACKS)
    else:
        built = [job for start in range(0, jobs, BATCH_SIZE)
                 for job in workers.BatchNoopWorker.new_batch(
                     [{"i": i} for i in range(start, min(jobs, start + BATCH_SIZE))],
                     batch_callback_queue=CALLBACKS)]
    django_jobs.insert_all(built)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE django_jobs_job" if connection.vendor == "postgresql"
                       else "ANALYZE")
    pending = ("SELECT EXISTS (SELECT 1 FROM django_jobs_job WHERE state IN "
               "('available', 'executing', 'scheduled', 'retryable'))")
    elapsed = drain({QUEUE: LIMIT, CALLBACKS: LIMIT}, "bench-batch", pending, 900)
    members = Job.objects.filter(batch__isnull=False if kind != "plain" else True)
    done = Job.objects.filter(state="completed").count()
    batches = 0 if kind == "plain" else (1 if kind == "one batch" else -(-jobs // BATCH_SIZE))
    if done != jobs + batches:
        raise RuntimeError(f"{kind}: {done} jobs completed, expected {jobs} + {batches} "
                           f"callbacks ({members.count()} members)")
    callbacks = workers.BATCH_TIMES.get("callbacks", {})
    if len(callbacks) != batches or any(n != 1 for n in callbacks.values()):
        raise RuntimeError(f"{kind}: handle_completed ran {callbacks} times")
    result = {"rate": jobs / elapsed}
    if kind == "many batches":
        ends, starts = workers.BATCH_TIMES["last_end"], workers.BATCH_TIMES["callback_start"]
        result["latency_ms"] = sorted((starts[b] - ends[b]) * 1000 for b in starts)
    return result


def measure(runs: int, jobs: int) -> dict:
    result = {key: [] for key in ("plain", "one", "many", "one_ratio", "many_ratio", "p50",
                                  "p95")}
    for i in range(runs):
        plain = run_once("plain", jobs)["rate"]
        one = run_once("one batch", jobs)["rate"]
        many = run_once("many batches", jobs)
        latencies = many["latency_ms"]
        result["plain"].append(plain)
        result["one"].append(one)
        result["many"].append(many["rate"])
        result["one_ratio"].append(one / plain)
        result["many_ratio"].append(many["rate"] / plain)
        result["p50"].append(latencies[len(latencies) // 2])
        result["p95"].append(latencies[int(len(latencies) * 0.95)])
        print(f"  run {i + 1}: plain {plain:,.0f}, one batch {one:,.0f} (x{one / plain:.2f}), "
              f"batches of {BATCH_SIZE} {many['rate']:,.0f} (x{many['rate'] / plain:.2f}) "
              f"jobs/s; callback latency p50 {result['p50'][-1]:.1f} ms, p95 "
              f"{result['p95'][-1]:.1f} ms", file=sys.stderr, flush=True)
    return result


def report(results: dict, runs: int, jobs: int) -> None:
    print(f"\nBatch benchmark: {jobs:,} no-op jobs, queue limit {LIMIT}, one in-process node; "
          f"median of {runs} runs (spread = min-max).")
    rows = [("plain", "no batch (jobs/s)", "{:,.0f}", None),
            ("one", f"one batch of {jobs:,} (jobs/s)", "{:,.0f}", None),
            ("one_ratio", "  one batch / no batch, run by run", "{:.2f}", (TARGET_RATIO, True)),
            ("many", f"batches of {BATCH_SIZE} (jobs/s)", "{:,.0f}", None),
            ("many_ratio", "  batches / no batch, run by run", "{:.2f}", (TARGET_RATIO, True)),
            ("p50", "handle_completed latency p50 (ms)", "{:.1f}", (TARGET_P50_MS, False)),
            ("p95", "handle_completed latency p95 (ms)", "{:.1f}", None)]
    print_table(results, rows, width=48)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--engines", default="postgresql,sqlite")
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db:
        setup_django(args.db)
        print(json.dumps(measure(args.runs, args.jobs)))
        return
    started, load = time.perf_counter(), os.getloadavg()
    results = measure_engines(__file__, args.engines,
                              ["--runs", str(args.runs), "--jobs", str(args.jobs)])
    report(results, args.runs, args.jobs)
    print(load_line(started, load))


if __name__ == "__main__":
    main()
