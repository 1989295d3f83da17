"""Workers used by the benchmarks."""

import time

from django_jobs import Worker


class NoopWorker(Worker):
    def perform(self, job):
        return None


class RecordedNoopWorker(Worker):
    """A no-op whose small return value is recorded (bench/run.py: recording's cost)."""

    recorded = True

    def perform(self, job):
        return {"ok": True, "i": job.args.get("i")}


#: When each LatencyWorker job's ``perform`` started, by job id, as ``time.monotonic()``
#: (CLOCK_MONOTONIC on Linux: one clock for every process of the machine, so times taken in
#: another process compare directly).
STARTED: dict[int, float] = {}


class LatencyWorker(Worker):
    """Records when ``perform`` starts (bench/run.py, insert-to-perform latency)."""

    def perform(self, job):
        STARTED[job.pk] = time.monotonic()
