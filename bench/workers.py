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


#: (chain key, sequence) -> (perform's start, perform's end), as time.monotonic() (bench/chain.py).
TIMES: dict[tuple[int, int], tuple[float, float]] = {}


class TimedNoopWorker(Worker):
    """A no-op that records when it ran (the unchained side of bench/chain.py)."""

    def perform(self, job):
        started = time.monotonic()
        TIMES[job.args["key"], job.args["seq"]] = (started, time.monotonic())


class ChainedNoopWorker(TimedNoopWorker):
    """The same, one chain per ``key``."""

    chain = {"by": {"args": "key"}}
