"""Workers used by the benchmarks."""

import time

from django_jobs import Worker
from django_jobs.pro.batch import BatchWorker
from django_jobs.pro.chunk import ChunkWorker


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


#: bench/batch.py: per batch, the end of its last member ("last_end"), the start of its
#: handle_completed ("callback_start"), and how many times that ran ("callbacks").
BATCH_TIMES: dict[str, dict] = {}


class BatchNoopWorker(BatchWorker):
    """A no-op member; its batch's handle_completed records when it starts."""

    def process(self, job):
        ends = BATCH_TIMES.setdefault("last_end", {})
        batch = job.meta["batch_id"]
        ends[batch] = max(ends.get(batch, 0.0), time.monotonic())

    def handle_completed(self, job):
        batch = job.meta["batch_id"]
        BATCH_TIMES.setdefault("callback_start", {})[batch] = time.monotonic()
        counts = BATCH_TIMES.setdefault("callbacks", {})
        counts[batch] = counts.get(batch, 0) + 1


class ChunkNoopWorker(ChunkWorker):
    """No-op chunks of 100 (bench/chunk.py)."""

    size = 100

    def process(self, jobs):
        return None


#: bench/chunk.py trickle: (job ids of a chunk, when its process() started).
CHUNK_TIMES: list[tuple[list[int], float]] = []


class TrickleChunkWorker(ChunkWorker):
    size = 100
    gather_timeout = 1

    def process(self, jobs):
        CHUNK_TIMES.append(([job.pk for job in jobs], time.monotonic()))
