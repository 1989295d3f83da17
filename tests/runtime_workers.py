"""Fixture workers and helpers for the runtime tests (tests/test_runtime_*.py).

Workers live at module level so that the runtime can import them by dotted path
(``tests.runtime_workers.ReturnWorker``). What they observe goes to :data:`record`, which the
tests reset in ``setUp``; jobs that must block wait on :data:`record.gate` (never for more than
a few seconds, so that a failing test cannot hang the suite).

The waits and job helpers are tests/waits.py's and tests/helpers.py's; ``wait_until`` here adds
what the fixture jobs are doing to its failure message.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from contextlib import contextmanager

from django.db import connection, transaction
from django.test import TransactionTestCase
from django.utils import timezone

from django_jobs import Cancel, Discard, Snooze, Worker
from django_jobs.models import Job, Producer as ProducerRow
from django_jobs.runtime import node as runtime_node

from . import waits

#: Longest time a blocking fixture job waits for its gate.
BLOCK_LIMIT = 10.0


class Record:
    """What fixture jobs saw, shared between the pool threads and the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.order: list = []          # job args["n"] in the order jobs started
            self.current = 0               # jobs inside perform now
            self.max_current = 0           # most jobs inside perform at once
            self.started: list[int] = []   # ids of jobs that entered perform
            self.exited: dict[int, str] = {}  # id -> how perform ended ("returned", exc name)
            self.gate = threading.Event()

    def enter(self, job) -> None:
        with self.lock:
            self.current += 1
            self.max_current = max(self.max_current, self.current)
            self.started.append(job.pk)
            if "n" in job.args:
                self.order.append(job.args["n"])

    def leave(self, job, how: str) -> None:
        with self.lock:
            self.current -= 1
            self.exited[job.pk] = how

    @contextmanager
    def performing(self, job):
        """``enter`` the job, and ``leave`` it with "returned" or the name of the exception
        that ended it (``JobTimeout``, ``JobCancelled``, ``CancelledError``, ...)."""
        self.enter(job)
        how = "returned"
        try:
            yield
        except BaseException as exc:
            how = type(exc).__name__
            raise
        finally:
            self.leave(job, how)

    def wait_for_gate(self) -> bool:
        """Block until :attr:`gate` is set, at most BLOCK_LIMIT s; True if it was set.

        Polls in short sleeps rather than ``gate.wait()``: the runtime stops a job by raising
        an exception in its thread, which Python delivers between bytecodes only.
        """
        deadline = time.monotonic() + BLOCK_LIMIT
        while not self.gate.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.gate.is_set()

    async def wait_for_gate_async(self) -> bool:
        """:meth:`wait_for_gate` for coroutines (cancelled at an ``await``)."""
        deadline = time.monotonic() + BLOCK_LIMIT
        while not self.gate.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.gate.is_set()

    def describe(self) -> str:
        """What the fixture jobs are doing (for the failure message of a wait)."""
        with self.lock:
            return (f"fixture jobs in perform: {self.current} (at most {self.max_current} at "
                    f"once), {len(self.started)} started, {len(self.exited)} exited")


record = Record()


# -- outcomes -----------------------------------------------------------------------------------

class ReturnWorker(Worker):
    queue = "outcomes"

    def perform(self, job):
        with record.performing(job):
            return job.args.get("value")


class FailWorker(Worker):
    queue = "outcomes"

    def perform(self, job):
        raise ValueError(f"boom {job.args.get('tag', '')}".strip())


class FastRetryWorker(Worker):
    """Fails every time and retries at once: the stager brings it back immediately."""

    queue = "outcomes"
    max_attempts = 2

    def perform(self, job):
        raise RuntimeError(f"attempt {job.attempt} failed")

    def backoff(self, job):
        return 0


class CustomBackoffWorker(Worker):
    queue = "outcomes"
    BACKOFF = 1234

    def perform(self, job):
        raise KeyError("missing")

    def backoff(self, job):
        return self.BACKOFF + job.attempt


class BrokenBackoffWorker(Worker):
    """``backoff`` itself raises: the default backoff is used instead."""

    queue = "outcomes"

    def perform(self, job):
        raise ValueError("failed")

    def backoff(self, job):
        raise ZeroDivisionError("bad backoff")


class SnoozeWorker(Worker):
    queue = "outcomes"

    def perform(self, job):
        return Snooze(job.args.get("seconds", 60))


class CancelWorker(Worker):
    queue = "outcomes"

    def perform(self, job):
        return Cancel(job.args.get("reason", "no reason"))


class DiscardWorker(Worker):
    queue = "outcomes"

    def perform(self, job):
        return Discard(job.args.get("reason", "no reason"))


class BusyLoopTimeoutWorker(Worker):
    """A pure Python busy loop that never returns by itself."""

    queue = "outcomes"

    def timeout(self, job):
        return 0.3

    def perform(self, job):
        with record.performing(job):
            deadline = time.monotonic() + BLOCK_LIMIT
            while True:
                if time.monotonic() > deadline:  # safety net only; the timeout must win
                    return "not stopped"


class AsyncSleepTimeoutWorker(Worker):
    queue = "outcomes"

    def timeout(self, job):
        return 0.3

    async def perform(self, job):
        with record.performing(job):
            await asyncio.sleep(BLOCK_LIMIT)
            return "not stopped"


class AsyncReturnWorker(Worker):
    queue = "outcomes"

    async def perform(self, job):
        await asyncio.sleep(0.01)
        return {"doubled": job.args["x"] * 2}


class AsyncFailWorker(Worker):
    queue = "outcomes"

    async def perform(self, job):
        await asyncio.sleep(0)
        raise LookupError("async failure")


class NoneTimeoutWorker(Worker):
    """``timeout`` returning None: no limit; the job runs to its end."""

    queue = "outcomes"

    def timeout(self, job):
        return None

    def perform(self, job):
        time.sleep(0.2)
        return "finished"


# -- ordering, concurrency and control --------------------------------------------------------

class RecordWorker(Worker):
    """Records args["n"] in start order; sleeps args["sleep"] seconds if given."""

    queue = "ordered"

    def perform(self, job):
        with record.performing(job):
            time.sleep(job.args.get("sleep", 0))
            return job.args.get("n")


class GateWorker(Worker):
    """Runs until ``record.gate`` is set (at most BLOCK_LIMIT s), tracking concurrency."""

    queue = "control"

    def perform(self, job):
        with record.performing(job):
            return "released" if record.wait_for_gate() else "gate timed out"


class AsyncGateWorker(Worker):
    queue = "control"

    async def perform(self, job):
        with record.performing(job):
            return "released" if await record.wait_for_gate_async() else "gate timed out"


class OrmWorker(Worker):
    """Uses the ORM from the pool thread: reads its own row and counts its queue."""

    queue = "orm"

    def perform(self, job):
        row = Job.objects.get(pk=job.pk)
        assert row.state == "executing", row.state
        return Job.objects.filter(queue=job.queue).count()


class LeaveTransactionOpenWorker(Worker):
    """Enters ``atomic()`` and returns without leaving it (a buggy job)."""

    queue = "orm"

    def perform(self, job):
        transaction.atomic().__enter__()
        Job.objects.filter(pk=job.pk).exists()
        return "left open"


class UniqueIncompleteWorker(Worker):
    queue = "unique"
    unique = {"period": "infinity", "states": "incomplete"}

    def perform(self, job):
        if job.args.get("fail"):
            raise ValueError("unique job failed")
        return None


class UniqueAllWorker(Worker):
    queue = "unique"
    unique = {"period": 60, "states": "all"}

    def perform(self, job):
        return None


# -- helpers ------------------------------------------------------------------------------------

def wait_until(predicate, timeout: float = waits.TIMEOUT, *, what: str | None = None,
               message: str | None = None, **options):
    """:func:`tests.waits.wait_until` whose failure also tells what the fixture jobs are doing
    (``message`` is an older name of ``what``)."""
    options.setdefault("describe", record.describe)
    return waits.wait_until(predicate, timeout, what=what or message, **options)


def next_heartbeat(node, timeout: float = waits.TIMEOUT) -> None:
    """Wait until every producer of ``node`` has heartbeated (and so re-read its row) after
    this call: local queue control can be undone by a heartbeat that read the rows just
    before it (see test_runtime_control.HeartbeatRaceTests); the next one puts it right."""
    after = timezone.now()
    uuids = [p.uuid for p in node.producers.values()]
    rows = ProducerRow.objects.filter(uuid__in=uuids)
    waits.wait_until(lambda: rows.filter(heartbeat_at__gt=after).count() == len(uuids), timeout,
                     what=f"the next heartbeat of node {node.name}",
                     describe=lambda: f"{rows.filter(heartbeat_at__gt=after).count()} of "
                                      f"{len(uuids)} producers heartbeated")
    time.sleep(0.05)  # the heartbeat applies the rows just after writing heartbeat_at


class RuntimeTestCase(TransactionTestCase):
    """Runs real nodes in this process; every node started is stopped at the end of the test."""

    def setUp(self) -> None:
        super().setUp()
        record.reset()
        self.addCleanup(record.gate.set)  # release blocked jobs before nodes stop
        # Keep the runtime's expected warnings (failed jobs, ...) out of the test output.
        logger = logging.getLogger("django_jobs")
        handler = logging.NullHandler()
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    def start_node(self, queues: dict[str, int], **options):
        options.setdefault("plugins", False)
        options.setdefault("grace", 2.0)
        options.setdefault("name", f"node-{self._testMethodName}")
        node = runtime_node.Node(queues=queues, **options)
        node.start()
        self.addCleanup(self.stop_node, node)
        return node

    @staticmethod
    def stop_node(node, timeout: float = 60.0) -> None:
        """``node.stop()``, bounded: it takes at most its grace period and a few seconds."""
        with waits.time_limit(timeout, f"node {node.name} to stop"):
            node.stop()
        assert node not in runtime_node.local_nodes
        # The pool threads of a stopped node leave their connections to the garbage collector
        # (see test_runtime_connections): collect now, or PostgreSQL refuses to drop the test
        # database at the end of the run while they are still open.
        gc.collect()

    def assertRunningAtOnce(self, count: int, hold: float = 0.3) -> None:
        """Wait until ``count`` fixture jobs are inside perform, and check that no more start
        over the next ``hold`` s (the queue's limit holds)."""
        wait_until(lambda: record.current == count, what=f"{count} jobs running at once")
        self.assertTrue(waits.holds_for(lambda: record.current == count, hold),
                        f"{record.current} jobs ran at once, not {count}")

    def assertNothingExecuting(self) -> None:
        self.assertEqual(list(Job.objects.filter(state="executing").values_list("pk", flat=True)),
                         [])


@contextmanager
def open_connections_counter():
    """PostgreSQL: a function counting the backends connected to the test database."""
    name = connection.settings_dict["NAME"]

    def count() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
            return cursor.fetchone()[0]

    yield count

