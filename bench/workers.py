"""Workers used by the benchmarks."""

import time

from django_jobs import Worker


class NoopWorker(Worker):
    def perform(self, job):
        return None


#: When each LatencyWorker job's ``perform`` started, by job id, as ``time.monotonic()``
#: (CLOCK_MONOTONIC on Linux: one clock for every process of the machine, so times taken in
#: another process compare directly).
STARTED: dict[int, float] = {}


class LatencyWorker(Worker):
    """Records when ``perform`` starts (bench/run.py, insert-to-perform latency)."""

    def perform(self, job):
        STARTED[job.pk] = time.monotonic()
