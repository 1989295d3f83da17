"""Insert throughput: ``insert_all`` of 10,000 jobs and 1,000 single ``enqueue`` calls.

    python bench/insert.py [--runs 5]

Prints jobs/s per engine (median of --runs runs, each on an emptied table) against the
targets, which apply to PostgreSQL on the 2-core reference machine: insert_all of 10,000 built
jobs >= 50,000 jobs/s (issue 21; 30,000 in the foundation issue), single enqueue in autocommit
>= 1,800 jobs/s. Side by side with other libraries: ../shared/peers-bench/run.sh. SQLite
figures are printed for information.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import median, run_engines, setup_django, truncate_jobs, verdict

TARGETS = {"insert_all": 50_000, "enqueue": 1_800}
BULK, SINGLE = 10_000, 1_000


def measure(runs: int) -> dict:
    import django_jobs
    from bench.workers import NoopWorker

    bulk, build_and_bulk, single = [], [], []
    for _ in range(runs):
        truncate_jobs()
        started = time.perf_counter()
        jobs = [NoopWorker.new({"user_id": i, "email": f"user{i}@example.com"})
                for i in range(BULK)]
        built = time.perf_counter()
        inserted = django_jobs.insert_all(jobs)
        done = time.perf_counter()
        assert len(inserted) == BULK and all(job.pk for job in inserted)
        bulk.append(BULK / (done - built))
        build_and_bulk.append(BULK / (done - started))

        truncate_jobs()
        started = time.perf_counter()
        for i in range(SINGLE):
            NoopWorker.enqueue({"user_id": i, "email": f"user{i}@example.com"})
        single.append(SINGLE / (time.perf_counter() - started))
    return {"insert_all": median(bulk), "new_and_insert_all": median(build_and_bulk),
            "enqueue": median(single), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db:
        setup_django(args.db)
        print(json.dumps(measure(args.runs)))
        return
    results = run_engines(__file__, ["--runs", str(args.runs)])
    print(f"Insert throughput, median of {args.runs} runs (jobs/s)")
    print(f"{'engine':<21}{'case':<36}{'jobs/s':>10}   target")
    cases = [("insert_all", f"insert_all({BULK:,} built jobs)"),
             ("new_and_insert_all", f"new() x {BULK:,} + insert_all"),
             ("enqueue", f"{SINGLE:,} x enqueue() in autocommit")]
    for vendor, figures in results.items():
        for key, label in cases:
            value = figures[key]
            target = TARGETS.get(key) if vendor.startswith("postgresql") else None
            note = f">= {target:,}: {verdict(value, target)}" if target else "-"
            print(f"{vendor:<21}{label:<36}{value:>10,.0f}   {note}")


if __name__ == "__main__":
    main()
