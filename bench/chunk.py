"""Chunk benchmark: jobs through a chunk worker next to the same jobs through a plain worker.

    python bench/chunk.py [--runs 2] [--jobs 100000] [--engines postgresql,sqlite]

Each engine is measured in a subprocess of its own, on a fresh database, with one in-process
node (plugins on) running one queue at limit 10, jobs inserted beforehand in one insert_all:

* plain: --jobs no-op jobs of a plain worker;
* chunked: the same jobs through a chunk worker of size 100 (a leader claims 99 members in one
  statement and acks them in one);
* trickle: a chunk worker with ``gather_timeout`` 1 s, fed one job every 50 ms for 10 s from this
  process's main thread: for each chunk, the time from its oldest job's insert to the start of
  ``process`` (target: within 1.1 s).

Runs alternate; figures are medians of --runs. Target (PostgreSQL): chunked at least 8 times
the plain rate.
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

LIMIT, QUEUE = 10, "default"
TARGET_RATIO, TARGET_TRICKLE_S = 8.0, 1.1


#: Is anything left to do?
PENDING = ("SELECT EXISTS (SELECT 1 FROM django_jobs_job WHERE state IN "
           "('available', 'executing', 'scheduled', 'retryable'))")


def run_once(chunked: bool, jobs: int) -> float:
    import django_jobs
    from bench import workers
    from django.db import connection
    from django_jobs.models import Job

    truncate_jobs()
    worker = workers.ChunkNoopWorker if chunked else workers.NoopWorker
    django_jobs.insert_all([worker.new({"i": i}) for i in range(jobs)])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE django_jobs_job" if connection.vendor == "postgresql"
                       else "ANALYZE")
    elapsed = drain({QUEUE: LIMIT}, "bench-chunk", PENDING, 900)
    done = Job.objects.filter(state="completed").count()
    if done != jobs:
        raise RuntimeError(f"{done} of {jobs} jobs completed")
    return jobs / elapsed


def trickle_once() -> list[float]:
    """Seconds from each chunk's oldest insert to its process()."""
    from bench import workers
    from django.db import connection
    from django_jobs.runtime.node import Node

    truncate_jobs()
    workers.CHUNK_TIMES.clear()
    node = Node(queues={QUEUE: LIMIT}, name="bench-trickle", grace=5)
    node.start()
    inserted = {}
    try:
        for i in range(200):
            job = workers.TrickleChunkWorker.enqueue({"i": i})
            inserted[job.pk] = time.monotonic()
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(PENDING)
                if not cursor.fetchone()[0]:
                    break
            time.sleep(0.05)
    finally:
        node.stop()
    return [started - min(inserted[pk] for pk in ids) for ids, started in workers.CHUNK_TIMES]


def measure(runs: int, jobs: int) -> dict:
    result = {"plain": [], "chunked": [], "ratio": [], "trickle_max": [], "trickle_p50": []}
    for i in range(runs):
        plain = run_once(False, jobs)
        chunked = run_once(True, jobs)
        waits = sorted(trickle_once())
        result["plain"].append(plain)
        result["chunked"].append(chunked)
        result["ratio"].append(chunked / plain)
        result["trickle_max"].append(max(waits))
        result["trickle_p50"].append(waits[len(waits) // 2])
        print(f"  run {i + 1}: plain {plain:,.0f} jobs/s, chunked {chunked:,.0f} jobs/s "
              f"(x{chunked / plain:.1f}); trickle: {len(waits)} chunks, oldest job's wait p50 "
              f"{result['trickle_p50'][-1]:.2f} s, max {max(waits):.2f} s",
              file=sys.stderr, flush=True)
    return result


def report(results: dict, runs: int, jobs: int) -> None:
    print(f"\nChunk benchmark: {jobs:,} no-op jobs, chunks of 100, queue limit {LIMIT}, one "
          f"in-process node; median of {runs} runs (spread = min-max).")
    rows = [("plain", "plain worker (jobs/s)", "{:,.0f}", None),
            ("chunked", "chunk worker, size 100 (jobs/s)", "{:,.0f}", None),
            ("ratio", "  chunked / plain, run by run", "{:.1f}", (TARGET_RATIO, True)),
            ("trickle_p50", "trickle, gather_timeout 1 s: oldest job's wait p50 (s)", "{:.2f}",
             None),
            ("trickle_max", "  the longest wait (s)", "{:.2f}", (TARGET_TRICKLE_S, False))]
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
