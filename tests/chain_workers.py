"""Workers of the chain and deadline tests (module level: runjobs children import them).

Every attempt that gets that far records its moments (``start``, then ``end``, ``fail``,
``snooze`` or ``cancel``) as rows of the raw table ``chain_effect``, created and dropped by the
tests (:data:`EFFECT_DDL`): written in autocommit on the job's own connection, with the job's
chain id, the attempt, the process and a ``time.monotonic()`` instant (one clock for every
process of the machine), so the order and overlap of the jobs of a chain, and how often each
ran, are read back from the database whatever happened to the processes.
"""

import os
import time

from django.db import connection

from django_jobs import Cancel, Snooze, Worker

QUEUE = "chains"
#: Raw table of the moments of every attempt, created by the tests.
EFFECT_TABLE = "chain_effect"
EFFECT_DDL = (f"CREATE TABLE {EFFECT_TABLE} (job_id BIGINT NOT NULL, chain VARCHAR(64) NOT NULL, "
              "seq INTEGER NOT NULL, event VARCHAR(16) NOT NULL, attempt INTEGER NOT NULL, "
              "pid INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL)")


def record(job, event: str) -> None:
    """One row: this attempt of ``job`` (0 for a job never written, as perform_job runs) got
    to ``event`` now."""
    meta = job.meta if isinstance(job.meta, dict) else {}
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {EFFECT_TABLE} (job_id, chain, seq, event, attempt, pid, at) "
                       f"VALUES (%s, %s, %s, %s, %s, %s, %s)",
                       [job.pk or 0, meta.get("chain_id", ""), job.args.get("seq", 0), event,
                        job.attempt, os.getpid(), time.monotonic()])


def hold(seconds: float) -> None:
    """Run ``seconds`` in Python code (short sleeps: an interruption lands at once)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(min(0.01, max(0.0, until - time.monotonic())))


def scripted(job) -> object:
    """What the args ask of an attempt, recorded: ``sleep`` seconds of work; ``fail``: raise on
    the first attempt; ``snooze``: snooze 0.05 s once; ``cancel``: return Cancel."""
    record(job, "start")
    hold(job.args.get("sleep", 0))
    if job.args.get("fail") and job.attempt == 1:
        record(job, "fail")
        raise RuntimeError("webhook endpoint down")
    if job.args.get("snooze") and not job.meta.get("snoozed"):
        record(job, "snooze")
        return Snooze(0.05)
    if job.args.get("cancel"):
        record(job, "cancel")
        return Cancel("asked to")
    record(job, "end")
    return None


# -- chains -------------------------------------------------------------------------------------


class AccountWebhook(Worker):
    """One chain per account (on_discarded / on_cancelled: ignore, the default)."""

    queue = QUEUE
    max_attempts = 5
    chain = {"by": {"args": "account"}}

    def perform(self, job):
        return scripted(job)

    def backoff(self, job):
        return 0.05


class HoldingChain(Worker):
    """One chain per meta ``tenant``; a discarded or cancelled job holds the rest. One attempt
    (``fail`` discards it; a retry then completes)."""

    queue = QUEUE
    max_attempts = 1
    chain = {"by": ["worker", {"meta": "tenant"}], "on_discarded": "hold",
             "on_cancelled": "hold"}

    def perform(self, job):
        return scripted(job)


class HoldingOtherWorker(Worker):
    """HoldingChain's partition on another worker."""

    queue = QUEUE
    chain = {"by": ["worker", {"meta": "tenant"}], "on_discarded": "hold",
             "on_cancelled": "hold"}

    def perform(self, job):
        return scripted(job)


class WorkerChain(Worker):
    queue = QUEUE
    chain = True

    def perform(self, job):
        return scripted(job)


class WorkerChainByName(Worker):
    queue = QUEUE
    chain = {"by": "worker"}

    def perform(self, job):
        return scripted(job)


class WorkerChainByDefault(Worker):
    queue = QUEUE
    chain = {}

    def perform(self, job):
        return scripted(job)


class ChainByArgsKeys(Worker):
    queue = QUEUE
    chain = {"by": {"args": ["account", "region"]}}

    def perform(self, job):
        return scripted(job)


class ChainByMeta(Worker):
    queue = QUEUE
    chain = {"by": {"meta": "tenant"}}

    def perform(self, job):
        return scripted(job)


class ChainByMetaKeys(Worker):
    queue = QUEUE
    chain = {"by": {"meta": ("tenant", "shard")}}

    def perform(self, job):
        return scripted(job)


class ChainCombined(Worker):
    queue = QUEUE
    chain = {"by": ["worker", {"args": "account"}, {"meta": "tenant"}]}

    def perform(self, job):
        return scripted(job)


class ChainCombinedOther(Worker):
    """ChainCombined's partition on another worker."""

    queue = QUEUE
    chain = {"by": ["worker", {"args": "account"}, {"meta": "tenant"}]}

    def perform(self, job):
        return scripted(job)


class EncryptedChain(Worker):
    """Encrypted args, chained by a meta key (by args is refused)."""

    queue = QUEUE
    encrypted = True
    chain = {"by": {"meta": "tenant"}}

    def perform(self, job):
        return scripted(job)


class NotChained(Worker):
    queue = QUEUE
    chain = False

    def perform(self, job):
        return scripted(job)


# -- deadlines ----------------------------------------------------------------------------------


class ShortDeadline(Worker):
    """A 60 s deadline, not forced; runs the script of its args."""

    queue = QUEUE
    deadline = 60
    max_attempts = 5

    def perform(self, job):
        return scripted(job)

    def backoff(self, job):
        return 0.05


class HourDeadline(Worker):
    queue = QUEUE
    deadline = (1, "hour")

    def perform(self, job):
        return scripted(job)


class ForcedDeadline(Worker):
    """A forced 60 s deadline (new(..., deadline=...) shortens it); runs ``sleep`` seconds
    in Python code."""

    queue = QUEUE
    deadline = {"in": 60, "force": True}

    def perform(self, job):
        return scripted(job)


class BlockedDeadline(Worker):
    """A forced deadline, but blocked in one C call (``time.sleep``) for ``sleep`` seconds."""

    queue = QUEUE
    deadline = {"in": 60, "force": True}

    def perform(self, job):
        record(job, "start")
        time.sleep(job.args.get("sleep", 0))
        record(job, "end")


class UniqueMarker(Worker):
    """A unique job of another queue (tests make an insert_all wait on its unique slot)."""

    queue = "chain-markers"
    unique = {"period": 60}

    def perform(self, job):
        return None


class DeadlineChain(Worker):
    """Chained by account and with a deadline: a job whose deadline passes while it waits is
    cancelled when its turn comes, and the chain goes on (on_cancelled: ignore)."""

    queue = QUEUE
    chain = {"by": {"args": "account"}}
    deadline = 60

    def perform(self, job):
        return scripted(job)


class HoldingDeadlineChain(Worker):
    """The same, holding the rest of the chain after a cancelled job."""

    queue = QUEUE
    chain = {"by": {"args": "account"}, "on_cancelled": "hold"}
    deadline = 60

    def perform(self, job):
        return scripted(job)


class BlockingChain(Worker):
    """Chained by account; blocks ``sleep`` seconds in one C call (``time.sleep``), and records
    ``exit`` whenever perform leaves, interrupted or not."""

    queue = QUEUE
    chain = {"by": ["worker", {"args": "account"}]}

    def perform(self, job):
        record(job, "start")
        try:
            time.sleep(job.args.get("sleep", 0))
            record(job, "end")
        finally:
            record(job, "exit")
