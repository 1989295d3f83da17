"""Workers of the chunk tests (module level: runjobs children import them).

Every chunk that gets to ``process`` records its moments (``start``, then ``end`` or ``raise``)
as rows of the raw table ``chunk_effect``, one row per job of the chunk, created and dropped by
the tests (:data:`EFFECT_DDL`): written in autocommit on the leader's own connection, with the
leader's id, the job's attempt, the process and a ``time.monotonic()`` instant (one clock for
every process of the machine), so which jobs shared a chunk, how often each was processed and
which chunks overlapped are read back from the database whatever happened to the processes.
"""

import os
import threading
import time
from collections import defaultdict

from django.db import connection

from django_jobs import (Cancel, ChunkCancel, ChunkDiscard, ChunkError, ChunkSnooze, ChunkWorker,
                         Worker)

QUEUE = "chunks"
#: What each chunk got (job ids), in this process.
CHUNKS: list[list[int]] = []
#: Raw table of the moments of every chunk, created by the tests.
EFFECT_TABLE = "chunk_effect"
EFFECT_DDL = (f"CREATE TABLE {EFFECT_TABLE} (job_id BIGINT NOT NULL, leader BIGINT NOT NULL, "
              "event VARCHAR(16) NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, "
              "at DOUBLE PRECISION NOT NULL)")
#: In-process chunks (GatedTexts) wait for GATE after setting STARTED.
GATE = threading.Event()
STARTED = threading.Event()


class SMSWorker(ChunkWorker):
    """The module docstring's example; touches no database (perform_chunk, inline mode)."""

    queue = QUEUE
    size = 5
    gather_timeout = 0.3
    max_attempts = 3

    def process(self, jobs):
        CHUNKS.append([job.pk for job in jobs])
        failed = [job for job in jobs if job.args.get("fail") and job.attempt == 1]
        dropped = [job for job in jobs if job.args.get("drop")]
        stopped = [job for job in jobs if job.args.get("stop")]
        return [ChunkError("gateway refused", failed), ChunkDiscard("bad number", dropped),
                ChunkCancel("unsubscribed", stopped)]

    def backoff(self, job):
        return 0.01


class BrokenSMS(ChunkWorker):
    """A chunk worker whose gateway is down (touches no database)."""

    queue = QUEUE
    size = 5
    gather_timeout = 0.3

    def process(self, jobs):
        CHUNKS.append([job.pk for job in jobs])
        raise RuntimeError("gateway down")


class PlainSMS(Worker):
    """A plain worker of the chunk queue: never a member of a chunk worker's chunk."""

    queue = QUEUE

    def perform(self, job):
        return None


# -- recording ----------------------------------------------------------------------------------


def record(jobs, event: str) -> None:
    """One row per job of the chunk ``jobs`` (leader first): it got to ``event`` now."""
    leader = jobs[0].pk or 0
    now, pid = time.monotonic(), os.getpid()
    rows = [(job.pk or 0, leader, event, job.attempt, pid, now) for job in jobs]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {EFFECT_TABLE} (job_id, leader, event, attempt, pid, at) "
                       f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(rows))}",
                       [value for row in rows for value in row])


def hold(seconds: float) -> None:
    """Run ``seconds`` in Python code (short sleeps: an interruption lands at once)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(min(0.01, max(0.0, until - time.monotonic())))


def verdicts(jobs) -> object:
    """What the jobs' args ask of the chunk's result:

    * ``error: n`` — named in a ChunkError while ``attempt <= n``;
    * ``discard`` / ``cancel`` — named in a ChunkDiscard / ChunkCancel with that reason;
    * ``snooze: seconds`` — named in a ChunkSnooze of those seconds, on attempts never snoozed;
    * ``foreign`` — the result also names a job that is not in the chunk;
    * ``value`` — the chunk returns that value instead of a list (everything completes).
    """
    values = [job.args["value"] for job in jobs if "value" in job.args]
    if values:
        return values[0]
    results = []
    failed = [job for job in jobs if job.attempt <= job.args.get("error", 0)]
    if failed:
        results.append(ChunkError("gateway refused", failed))
    for key, kind in (("discard", ChunkDiscard), ("cancel", ChunkCancel)):
        named = [job for job in jobs if job.args.get(key)]
        if named:
            results.append(kind(named[0].args[key], named))
    snoozes = defaultdict(list)
    for job in jobs:
        if job.args.get("snooze") and not job.meta.get("snoozed"):
            snoozes[job.args["snooze"]].append(job)
    results += [ChunkSnooze(seconds, named) for seconds, named in snoozes.items()]
    if any(job.args.get("foreign") for job in jobs):
        results.append(ChunkError("not ours", [Texts.new({"n": "stranger"})]))
    return results


def scripted(jobs) -> object:
    """Record ``start``; hold the longest ``sleep`` of the chunk, and ``stall`` of its jobs
    never stopped before (no error recorded: not put back, not rescued); ``raise`` in any job's
    args: record ``raise`` and raise; ``exit``: raise SystemExit; else record ``end`` and
    return :func:`verdicts`."""
    CHUNKS.append([job.pk for job in jobs])
    record(jobs, "start")
    hold(max(job.args.get("sleep", 0) + (0 if job.errors else job.args.get("stall", 0))
             for job in jobs))
    if any(job.args.get("raise") for job in jobs):
        record(jobs, "raise")
        raise RuntimeError("gateway down")
    if any(job.args.get("exit") for job in jobs):
        raise SystemExit(3)  # a library calling sys.exit()
    result = verdicts(jobs)
    record(jobs, "end")
    return result


# -- chunk workers --------------------------------------------------------------------------------


class Texts(ChunkWorker):
    """Chunks of 4 that gather for 0.2 s; three attempts, each job's backoff in its args."""

    queue = QUEUE
    size = 4
    gather_timeout = 0.2
    max_attempts = 3

    def process(self, jobs):
        return scripted(jobs)

    def backoff(self, job):
        return job.args.get("backoff", 30)


class OtherTexts(ChunkWorker):
    """Another chunk worker of the same queue: never in a Texts chunk."""

    queue = QUEUE
    size = 4
    gather_timeout = 0.2

    def process(self, jobs):
        return scripted(jobs)


class PatientTexts(ChunkWorker):
    """Chunks of 3 that would gather for a minute: full ones must not wait for it."""

    queue = QUEUE
    size = 3
    gather_timeout = (1, "minute")

    def process(self, jobs):
        return scripted(jobs)


class SlowGather(ChunkWorker):
    """Chunks of 5 that gather for 5 s (stopped while gathering)."""

    queue = QUEUE
    size = 5
    gather_timeout = 5

    def process(self, jobs):
        return scripted(jobs)


class ByAccount(ChunkWorker):
    queue = QUEUE
    size = 10
    gather_timeout = 0
    by = {"args": "account"}

    def process(self, jobs):
        return scripted(jobs)


class ByAccountRegion(ChunkWorker):
    queue = QUEUE
    size = 10
    gather_timeout = 0
    by = {"args": ["account", "region"]}

    def process(self, jobs):
        return scripted(jobs)


class ByTenant(ChunkWorker):
    queue = QUEUE
    size = 10
    gather_timeout = 0
    by = {"meta": "tenant"}

    def process(self, jobs):
        return scripted(jobs)


class ByAccountAndTenant(ChunkWorker):
    queue = QUEUE
    size = 10
    gather_timeout = 0
    by = {"args": "account", "meta": ["tenant"]}

    def process(self, jobs):
        return scripted(jobs)


class GatedTexts(ChunkWorker):
    """In-process chunks of 3 that wait (in Python code, interruptible) for :data:`GATE`."""

    queue = QUEUE
    size = 3
    gather_timeout = 0.5

    def process(self, jobs):
        CHUNKS.append([job.pk for job in jobs])
        record(jobs, "start")
        STARTED.set()
        until = time.monotonic() + 30  # bounded: a test that never opens the gate fails
        while not GATE.is_set() and time.monotonic() < until:
            hold(0.01)
        result = verdicts(jobs)
        record(jobs, "end")
        return result


class Singles(ChunkWorker):
    """Chunks of one: nothing to gather, so the minute's timeout never matters."""

    queue = QUEUE
    size = 1
    gather_timeout = (1, "minute")

    def process(self, jobs):
        return scripted(jobs)


class SlowTexts(ChunkWorker):
    """Chunks of 4 for real nodes: gathers 0.5 s, holds each chunk's ``sleep`` (and
    ``stall``)."""

    queue = QUEUE
    size = 4
    gather_timeout = 0.5
    max_attempts = 5

    def process(self, jobs):
        return scripted(jobs)


class DecidedTexts(ChunkWorker):
    """Chunks of 5 whose job features decide some members before ``process``: a member past
    its ``deadline`` is cancelled, and one with ``veto`` in its args is cancelled by its
    ``before_process`` hook. ``timeout(job)`` is the ``limit`` of the job's args (the leader's
    bounds the chunk); ``process`` is :func:`scripted` (``stall`` holds a first run)."""

    queue = QUEUE
    size = 5
    gather_timeout = 0.5
    deadline = (1, "hour")
    max_attempts = 3

    def before_process(self, job):
        if job.args.get("veto"):
            return Cancel("vetoed by its hook")
        return None

    def timeout(self, job):
        return job.args.get("limit")

    def process(self, jobs):
        return scripted(jobs)

    def backoff(self, job):
        return 600
