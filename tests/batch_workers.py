"""Workers of the batch tests (module level: runjobs children import them).

* :class:`MailingWorker`, :class:`PlainMember`: the docstring's example and a plain worker
  (members of heterogeneous batches).
* :class:`EveryHandler`: defines all six handlers; its members do what their args script
  (fail, fail once, snooze once, cancel, discard, sleep); each handler records what it saw
  (its name, the job's args and meta) as its recorded result, and fails its first attempt
  when the callback args ask it to.
* :class:`RaceWorker`: members that wait for a shared ``time.monotonic()`` instant (one clock
  for every process of the machine), so that the last members of a batch finish together on
  several nodes.
* :class:`CallbackOnly`: the callback worker of heterogeneous batches (its own queue);
  :class:`CompletedOnly`: a worker with one handler.
* :class:`NoHandler`, :class:`PlainWithHandler`, :class:`CustomIdWorker`: for the API's
  errors and ``gen_id``.

``BATCH_TEST_KILL`` (environment, read at import: set only for the runjobs children of the
kill test, never in the test process, whose transitions it would slow down): ``after_commit``
makes the process SIGKILL itself right after the commit of an ack that fired a batch's
``handle_completed`` (the callback job is then written, the node dies before anything else);
``before_commit`` inside the transaction of an ack that completes a batch's last members,
before it commits (the ack, and the callbacks with it, are rolled back: the lifeline gives the
members to another node).
"""

import os
import signal
import time
from itertools import count

from django.db import transaction

from django_jobs import Cancel, Discard, Snooze, Worker
from django_jobs.models import Batch
from django_jobs.models.batch import HANDLER_BITS
from django_jobs.pro.batch import BatchWorker
from django_jobs.signals import state_changed

QUEUE = "batches"
#: Where the callbacks of EveryHandler batches go unless told otherwise.
CALLBACK_QUEUE = "batch-callbacks"


class MailingWorker(BatchWorker):
    queue = QUEUE
    max_attempts = 2

    def process(self, job):
        if job.args.get("fail"):
            raise RuntimeError("mail server down")

    def backoff(self, job):
        return 0.01

    def handle_completed(self, job):
        return {"handler": "completed", "batch": job.meta["batch_id"]}

    def handle_exhausted(self, job):
        return None

    def handle_discarded(self, job):
        return None


class PlainMember(Worker):
    queue = QUEUE

    def perform(self, job):
        if job.args.get("fail"):
            raise RuntimeError("plain member failed")
        return None

    def backoff(self, job):
        return 0.01


def hold(seconds: float) -> None:
    """Sleep ``seconds`` in short slices (a node's interruption lands at once)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(min(0.01, max(0.0, until - time.monotonic())))


def scripted(job):
    """What a member's args ask of an attempt: ``sleep`` seconds; ``fail``: raise every time;
    ``fail_once``: raise on the first attempt; ``snooze``: snooze 0.05 s once; ``cancel``,
    ``discard``: return Cancel / Discard."""
    args = job.args
    hold(args.get("sleep", 0))
    if args.get("fail"):
        raise RuntimeError("member failed")
    if args.get("fail_once") and job.attempt == 1:
        raise RuntimeError("member failed once")
    if args.get("snooze") and not job.meta.get("snoozed"):
        return Snooze(0.05)
    if args.get("cancel"):
        return Cancel("asked to")
    if args.get("discard"):
        return Discard("asked to")
    return None


class HandlerMixin:
    """The six handlers, each returning (and so recording) what it saw."""

    def _handled(self, job, name):
        if job.args.get("fail_handler") == name and job.attempt == 1:
            raise RuntimeError(f"{name} failed")
        return {"handler": name, "batch_callback": job.meta.get("batch_callback"),
                "batch_id": job.meta.get("batch_id"), "args": job.args, "meta": job.meta}

    def handle_attempted(self, job):
        return self._handled(job, "handle_attempted")

    def handle_completed(self, job):
        return self._handled(job, "handle_completed")

    def handle_exhausted(self, job):
        return self._handled(job, "handle_exhausted")

    def handle_cancelled(self, job):
        return self._handled(job, "handle_cancelled")

    def handle_discarded(self, job):
        return self._handled(job, "handle_discarded")

    def handle_retryable(self, job):
        return self._handled(job, "handle_retryable")


class EveryHandler(HandlerMixin, BatchWorker):
    queue = QUEUE
    max_attempts = 3
    recorded = True

    def process(self, job):
        return scripted(job)

    def backoff(self, job):
        return 0.01


class CallbackOnly(HandlerMixin, BatchWorker):
    """The callback worker of heterogeneous batches (its own queue)."""

    queue = CALLBACK_QUEUE
    recorded = True

    def process(self, job):
        return None


class CompletedOnly(BatchWorker):
    """Only handle_completed: the other handlers' bits are set, no job is inserted."""

    queue = QUEUE

    def process(self, job):
        return scripted(job)

    def handle_completed(self, job):
        return None


class PlainWithHandler(Worker):
    """Not a batch worker, though it has a handler's name: refused as a callback worker (its
    callback jobs would run ``perform``, never ``handle_completed``)."""

    queue = CALLBACK_QUEUE
    #: What ran, in this process.
    ran: list = []

    def perform(self, job):
        PlainWithHandler.ran.append(("perform", dict(job.meta)))

    def handle_completed(self, job):
        PlainWithHandler.ran.append(("handle_completed", dict(job.meta)))


class NoHandler(BatchWorker):
    queue = QUEUE

    def process(self, job):
        return None


_ids = count()


class CustomIdWorker(BatchWorker):
    queue = QUEUE

    @classmethod
    def gen_id(cls):
        return f"custom-{os.getpid()}-{next(_ids)}"

    def process(self, job):
        return None

    def handle_exhausted(self, job):
        return None


class RaceWorker(BatchWorker):
    """Members wait until ``args["release_at"]`` (a ``time.monotonic()`` instant) then
    complete; ``sleep`` instead waits that long. Handlers: the three "every member" ones."""

    queue = QUEUE
    max_attempts = 5

    def process(self, job):
        if "release_at" in job.args:
            hold(job.args["release_at"] - time.monotonic())
        else:
            hold(job.args.get("sleep", 0))
        return None

    def backoff(self, job):
        return 0.05

    def handle_attempted(self, job):
        return None

    def handle_completed(self, job):
        return None

    def handle_exhausted(self, job):
        return None


# -- the kill test (runjobs children only) ----------------------------------------------------

KILL_MODE = os.environ.get("BATCH_TEST_KILL", "")


def _completing(changes):
    """batch id -> how many of ``changes`` complete one of its members."""
    found = {}
    for change in changes:
        meta = change.meta if isinstance(change.meta, dict) else {}
        if (change.new == "completed" and meta.get("batch_id")
                and "batch_callback" not in meta):
            found[meta["batch_id"]] = found.get(meta["batch_id"], 0) + 1
    return found


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_after_commit(sender, changes, using, **kwargs):
    batches = _completing(changes)
    if not batches:
        return

    def check():
        fired = Batch.objects.using(using).filter(pk__in=list(batches)).values_list(
            "fired", flat=True)
        if any(bits & HANDLER_BITS["handle_completed"] for bits in fired):
            _die()

    transaction.on_commit(check, using=using)


def _kill_before_commit(sender, changes, using, **kwargs):
    batches = _completing(changes)
    for batch_id, completing in batches.items():
        batch = Batch.objects.using(using).filter(pk=batch_id).first()
        if batch is not None and batch.members - batch.completed <= completing:
            _die()  # inside the ack's transaction: it is rolled back


if KILL_MODE == "after_commit":
    state_changed.connect(_kill_after_commit, weak=False)
elif KILL_MODE == "before_commit":
    state_changed.connect(_kill_before_commit, weak=False)
