"""Batches: many jobs as one group, with callbacks that fire exactly once.

::

    class MailingWorker(BatchWorker):
        queue = "mailers"

        def process(self, job):
            send_mail(job.args["email"], job.args["issue"])

        def handle_completed(self, job):          # every member completed
            Mailing.objects.filter(pk=job.args["mailing"]).update(sent=True)

        def handle_exhausted(self, job):          # every member finished, one way or another
            report(batch_status(job.meta["batch_id"]))


    jobs = MailingWorker.new_batch([{"email": e, "issue": 42} for e in emails],
                                   batch_callback_args={"mailing": mailing.pk})
    django_jobs.insert_all(jobs)

Each member carries ``meta["batch_id"]`` (a UUIDv7 unless given). The batch's ledger, a
:class:`~django_jobs.models.Batch` row, counts its members and how many are attempted,
completed, cancelled, discarded and retryable; it is kept in the transactions that insert
members and change their states (the written moment of job features), under the row's lock,
at the cost of one locked read and one update per batch per ack — never a count over the
batch. A handler's callback job is inserted in the same transaction as the change that makes it
due, and its bit in ``Batch.fired`` is set in that transaction too, so each handler fires once:
not twice when the last members finish at the same instant on several nodes (the second
transaction waits for the row, then reads the first one's counts and fired bits), and not
never (the same lock). A leader-side sweep recounts open batches from their members and fires
what is due: a safety net.

Handlers (methods of the callback worker, each optional, each run as its own job in the
callback queue, with ``batch_id`` and ``batch_callback`` (the handler's name) in meta and the
callback args and meta forwarded):

* ``handle_attempted``: every member attempted at least once;
* ``handle_completed``: every member completed;
* ``handle_exhausted``: every member completed, cancelled or discarded;
* ``handle_cancelled``, ``handle_discarded``, ``handle_retryable``: the first member to reach
  that state.

Callback jobs are not members. The "every member" handlers are judged on the members the batch
has at that moment: a member that joins after such a handler fired counts, but that handler
does not fire again (join a batch before its members can all finish, e.g. a batch scheduled for
midnight). Deleting members (the admin, ``delete_job``, the pruner) never fires a handler; the
batch is judged on what remains at its next change.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from ..build import new_job, validate_queue
from ..engines import get_engine
from ..exceptions import InvalidJobError
from ..features import Feature
from ..insertion import insert_all
from ..jsonutil import round_trip
from ..models.batch import COUNTERS, HANDLER_BITS, HANDLERS, Batch
from ..models.job import Job, JobChange, JobState
from ..plugins.base import Plugin
from ..registry import worker_class
from ..worker import Worker

logger = logging.getLogger("django_jobs.batch")

#: State -> the ledger counter of members now in that state.
STATE_COUNTERS = {JobState.COMPLETED: "completed", JobState.CANCELLED: "cancelled",
                  JobState.DISCARDED: "discarded", JobState.RETRYABLE: "retryable"}
#: State -> the handler fired when the first member reaches it.
FIRST_HANDLERS = {JobState.CANCELLED: "handle_cancelled", JobState.DISCARDED: "handle_discarded",
                  JobState.RETRYABLE: "handle_retryable"}
CALLBACK_OPTIONS = ("batch_callback_args", "batch_callback_meta", "batch_callback_queue",
                    "batch_callback_worker")


_uuid7_lock = threading.Lock()
_uuid7_last = [0, 0]  # the last id's millisecond and its 74 random bits


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix time in ms, then 74 bits that are random for the
    first id of a millisecond and increase by a random step for the next ones (the RFC's
    monotonic random), so ids of one process sort by creation even within a millisecond and
    when the clock steps back."""
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        rand = int.from_bytes(os.urandom(10), "big") >> 6          # 74 random bits
        last_ms, last_rand = _uuid7_last
        if ms <= last_ms:
            ms, rand = last_ms, last_rand + 1 + (rand >> 42)        # a random 32-bit step
            if rand >= 1 << 74:  # the millisecond's space is spent: borrow the next one
                ms, rand = ms + 1, rand & ((1 << 73) - 1)
        _uuid7_last[:] = [ms, rand]
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | (rand >> 62) << 64                         # version 7, rand_a
    value |= 0x2 << 62 | (rand & ((1 << 62) - 1))                   # RFC variant, rand_b
    return str(uuid.UUID(int=value))


class BatchWorker(Worker):
    """A worker whose jobs form batches: the work in :meth:`process`, the callbacks in
    ``handle_*`` methods (see the module docstring)."""

    def perform(self, job: Job) -> Any:
        handler = job.meta.get("batch_callback")
        if handler:
            return getattr(self, handler)(job)
        return self.process(job)

    def process(self, job: Job) -> Any:
        """A member's work; what ``perform`` is for other workers."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement process(job)")

    @classmethod
    def gen_id(cls) -> str:
        """A new batch id (a UUIDv7); override to choose your own."""
        return uuid7()

    @classmethod
    def new_batch(cls, args_or_jobs: Iterable[Mapping[str, Any] | Job],
                  **options: Any) -> list[Job]:
        """Unsaved members of a new batch, for ``insert_all``: jobs of this worker built from
        a list of args (with the normal job options), or jobs built beforehand (of any
        workers). Options: ``batch_id``, ``batch_callback_args``, ``batch_callback_meta``,
        ``batch_callback_queue``, ``batch_callback_worker``."""
        return new_batch(args_or_jobs, worker=cls, **options)


def _handlers(worker: type) -> list[str]:
    return [name for name in HANDLERS if callable(getattr(worker, name, None))]


def new_batch(args_or_jobs: Iterable[Mapping[str, Any] | Job], *, worker: type | None = None,
              **options: Any) -> list[Job]:
    """The members of a new batch (see :meth:`BatchWorker.new_batch`). Jobs of several
    workers make a heterogeneous batch, which names its ``batch_callback_worker``."""
    callback = {name: options.pop(name) for name in CALLBACK_OPTIONS if name in options}
    batch_id = str(options.pop("batch_id", None) or (worker or BatchWorker).gen_id())
    items = list(args_or_jobs)
    if not items:
        raise InvalidJobError("a batch needs at least one job")
    jobs = []
    for item in items:
        if isinstance(item, Job):
            if options:
                raise InvalidJobError(f"job options {sorted(options)} apply to args, not to "
                                      f"jobs built beforehand")
            item.meta = {**item.meta, "batch_id": batch_id}
            jobs.append(item)
        elif worker is None:
            raise InvalidJobError("new_batch of args needs the worker: call it on a "
                                  "BatchWorker (Worker.new_batch(args))")
        else:
            jobs.append(worker.new(item, **options, batch_id=batch_id))
    paths = {job.worker for job in jobs}
    callback_worker = callback.get("batch_callback_worker")
    if callback_worker is None:
        if len(paths) > 1 or worker is None:
            names = ", ".join(sorted(paths))
            raise InvalidJobError(f"a batch of jobs of several workers ({names}) needs "
                                  f"batch_callback_worker: the worker whose handlers run")
        callback_worker = worker
    callback_class = worker_class(callback_worker)
    if not issubclass(callback_class, BatchWorker):
        # Its callback jobs would run its perform(), never a handle_* method.
        raise InvalidJobError(f"batch callback worker {callback_class.worker_path} is not a "
                              f"BatchWorker: callback jobs run BatchWorker.perform, which "
                              f"calls the handler; a plain worker's would run its own "
                              f"perform and never its handlers (subclass BatchWorker)")
    if not _handlers(callback_class):
        raise InvalidJobError(f"batch callback worker {callback_class.worker_path} defines no "
                              f"handler ({', '.join(HANDLERS)})")
    queue = callback.get("batch_callback_queue") or callback_class._defaults["queue"]
    defaults = {"callback_worker": callback_class.worker_path,
                "callback_queue": validate_queue(queue),
                "callback_args": _json(callback.get("batch_callback_args", {}), "args"),
                "callback_meta": _json(callback.get("batch_callback_meta", {}), "meta")}
    for job in jobs:
        job._batch_defaults = defaults
    return jobs


def _json(value: Any, what: str) -> dict:
    if not isinstance(value, Mapping):
        raise InvalidJobError(f"batch_callback_{what} must be a dict, not {value!r}")
    return round_trip(dict(value), f"batch_callback_{what}")


def all_batch_jobs(job: Job, *, using: str | None = None) -> list[Job]:
    """Every member of ``job``'s batch (callback jobs excluded), in insertion order."""
    return list(batch_jobs(job, using=using))


def stream_batch_jobs(job: Job, *, using: str | None = None,
                      chunk_size: int = 2000) -> Iterator[Job]:
    """The members of ``job``'s batch one by one, in constant memory: a server-side cursor on
    PostgreSQL, rows fetched ``chunk_size`` at a time on SQLite."""
    return batch_jobs(job, using=using).iterator(chunk_size=chunk_size)


def batch_jobs(job: Job, *, using: str | None = None):
    batch_id = (job.meta or {}).get("batch_id")
    if not batch_id:
        raise InvalidJobError(f"job {job.pk} belongs to no batch")
    jobs = Job.objects.using(using or get_engine().alias)
    return jobs.filter(batch=batch_id).order_by("id")


@dataclass(frozen=True)
class BatchStatus:
    """What :func:`batch_status` tells of a batch."""

    batch: Batch
    counts: dict[str, int]
    handlers: dict[str, str]

    @property
    def progress(self) -> float:
        return self.batch.progress


def batch_status(batch_id: str, *, using: str | None = None) -> BatchStatus:
    """Counts by state (``pending`` for members not finished nor retryable), progress, and
    each handler the callback worker defines: ``pending``, ``fired`` (its callback job's
    state once run: ``completed``, ``failed`` for retryable/discarded, ...)."""
    alias = using or get_engine().alias
    batch = Batch.objects.using(alias).get(pk=batch_id)
    return batch_statuses([batch], alias)[batch_id]


def batch_statuses(batches: Sequence[Batch], alias: str) -> dict[str, BatchStatus]:
    """Statuses of many batches (as :func:`batch_status`), with one query for all their
    callback jobs."""
    ids = [pk for batch in batches for pk in (batch.callbacks or {}).values()]
    states = dict(Job.objects.using(alias).filter(pk__in=ids).values_list("id", "state"))
    result = {}
    for batch in batches:
        try:
            defined = _handlers(worker_class(batch.callback_worker))
        except Exception:
            defined = [h for h in HANDLERS if batch.has_fired(h)]
        handlers = {}
        for handler in defined:
            if not batch.has_fired(handler):
                handlers[handler] = "pending"
                continue
            state = states.get((batch.callbacks or {}).get(handler))
            handlers[handler] = {None: "fired", JobState.COMPLETED: "completed",
                                 JobState.RETRYABLE: "failed, retrying",
                                 JobState.DISCARDED: "failed",
                                 JobState.CANCELLED: "cancelled"}.get(state, f"fired ({state})")
        counts = {name: getattr(batch, name) for name in COUNTERS}
        counts["pending"] = batch.pending
        result[batch.pk] = BatchStatus(batch, counts, handlers)
    return result


class BatchFeature(Feature):
    """Keeps batches' ledgers and fires their callbacks (the written moments)."""

    name = "batch"
    meta_key = "batch_id"
    options = ("batch_id",)

    def setup(self, worker: type) -> bool | None:
        return True if issubclass(worker, BatchWorker) else None

    def build(self, job: Job, options: Mapping[str, Any], config: bool) -> None:
        if options.get("batch_id"):
            job.meta["batch_id"] = str(options["batch_id"])  # joins (or starts) that batch

    def inserted(self, jobs: list[Job], using: str) -> None:
        members: dict[str, list[Job]] = {}
        for job in jobs:  # a job of a batch worker outside any batch is a plain job
            if job.meta.get("batch_id") and "batch_callback" not in job.meta:
                members.setdefault(job.meta["batch_id"], []).append(job)
        batches = Batch.objects.using(using)
        for batch_id, joined in sorted(members.items()):
            defaults = getattr(joined[0], "_batch_defaults", None) or _join_defaults(joined[0])
            batches.join(batch_id, len(joined), defaults)

    def acked(self, changes: list[JobChange], using: str) -> None:
        by_batch: dict[str, list[JobChange]] = {}
        for change in changes:
            if change.meta.get("batch_id") and "batch_callback" not in change.meta:
                by_batch.setdefault(change.meta["batch_id"], []).append(change)
        if not by_batch:
            return
        deltas, entered = {}, {}
        for batch_id, batch_changes in by_batch.items():
            deltas[batch_id], entered[batch_id] = _deltas(batch_changes)
        # The ledgers, changed and locked: what they read now includes every transaction
        # that changed them before this one, and none can change them until this one ends.
        ledgers = Batch.objects.using(using).apply(deltas)
        callbacks, fired = [], []
        for batch_id, batch in sorted(ledgers.items()):
            if not any(change.new is not None for change in by_batch[batch_id]):
                continue  # only deletes: they uncount members, and never fire a handler
            due = _due(batch, entered[batch_id])
            if due:  # rare: a handler fires; remember it in the same transaction
                callbacks += due
                fired.append(batch)
        _insert_callbacks(callbacks, using)
        for batch in fired:  # its fired bits and callback ids, in one statement
            _save(batch, using)


def _join_defaults(job: Job) -> dict[str, Any]:
    """Callback settings of a batch started by ``new(..., batch_id=...)``: the job's own
    worker and queue."""
    return {"callback_worker": job.worker, "callback_queue": job.queue}


def _deltas(changes: list[JobChange]) -> tuple[dict[str, int], set[str]]:
    """What the changes do to a ledger's counters, and the states members entered."""
    delta: dict[str, int] = {}
    entered = set()

    def add(counter: str, amount: int) -> None:
        delta[counter] = delta.get(counter, 0) + amount

    for change in changes:
        if change.old in STATE_COUNTERS:
            add(STATE_COUNTERS[change.old], -1)
        before = _attempted(change.old, change.old_attempt if change.old_attempt is not None
                            else change.attempt)
        if change.new is None:  # deleted
            add("members", -1)
            add("attempted", -before)
            continue
        if change.new in STATE_COUNTERS:
            add(STATE_COUNTERS[change.new], 1)
        entered.add(change.new)
        add("attempted", _attempted(change.new, change.attempt) - before)
    return delta, entered


def _attempted(state: str, attempt: int | None) -> int:
    """Whether a member in ``state`` at ``attempt`` counts as attempted: an attempt of it has
    ended (the first is still running while it executes at attempt 1). The same rule as
    :func:`recount`; a put-back gives its attempt back, a rescue keeps it."""
    attempt = attempt or 0
    return int(attempt >= 2 or (attempt >= 1 and state != JobState.EXECUTING))


def _due(batch: Batch, entered: set[str]) -> list[tuple[Batch, str]]:
    """The handlers that fire now: set their bits, return them with their batch."""
    due = []
    if batch.members > 0:
        if batch.attempted >= batch.members:
            due.append("handle_attempted")
        if batch.completed >= batch.members:
            due.append("handle_completed")
        if batch.finished >= batch.members:
            due.append("handle_exhausted")
    due += [FIRST_HANDLERS[state] for state in entered if state in FIRST_HANDLERS]
    fire = []
    for handler in due:
        if batch.fired & HANDLER_BITS[handler]:
            continue
        batch.fired |= HANDLER_BITS[handler]
        fire.append((batch, handler))
    return fire


def _save(batch: Batch, using: str, *, counters: bool = False) -> None:
    """Write the fired bits and the callbacks' ids, and the counters too with ``counters``
    (a recount; at ack time the ledger's own UPDATE wrote them, and the row is locked since)."""
    batch.updated_at = timezone.now()
    values = {name: getattr(batch, name) for name in COUNTERS} if counters else {}
    Batch.objects.using(using).filter(pk=batch.pk).update(
        **values, fired=batch.fired, callbacks=batch.callbacks, updated_at=batch.updated_at)


def _insert_callbacks(due: list[tuple[Batch, str]], using: str) -> None:
    """Insert the callback jobs of handlers the callback worker defines (in the caller's
    transaction); remember each one's id in its batch (the caller saves it)."""
    jobs, owners = [], []
    for batch, handler in due:
        try:
            worker = worker_class(batch.callback_worker)
        except Exception as exc:
            logger.error("batch %s: %s cannot run: %s", batch.pk, handler, exc)
            continue
        if not callable(getattr(worker, handler, None)):
            continue
        if not issubclass(worker, BatchWorker):  # refused by new_batch; a ledger from before
            logger.error("batch %s: %s cannot run: %s is not a BatchWorker (its callback job "
                         "would run its perform)", batch.pk, handler, batch.callback_worker)
            continue
        meta = {**(batch.callback_meta or {}), "batch_id": batch.pk, "batch_callback": handler}
        jobs.append(new_job(worker, batch.callback_args or {}, queue=batch.callback_queue
                            or worker._defaults["queue"], meta=meta))
        owners.append((batch, handler))
    if not jobs:
        return
    inserted = insert_all(jobs, using=using)
    for (batch, handler), job in zip(owners, inserted, strict=True):
        batch.callbacks = {**(batch.callbacks or {}), handler: job.pk}
    logger.info("batch callbacks inserted: %s",
                ", ".join(f"{b.pk} {h}" for b, h in owners))


def recount(batch: Batch, using: str) -> bool:
    """Recount ``batch``'s ledger from its members (through the batch index); return whether
    it was off."""
    members = Job.objects.using(using).filter(batch=batch.pk)
    counts = members.aggregate(
        members=Count("id"),
        attempted=Count("id", filter=Q(attempt__gte=2) | (Q(attempt__gte=1) & ~Q(
            state=JobState.EXECUTING))),
        **{counter: Count("id", filter=Q(state=state))
           for state, counter in STATE_COUNTERS.items()})
    off = any(getattr(batch, name) != counts[name] for name in COUNTERS)
    for name in COUNTERS:
        setattr(batch, name, counts[name])
    return off


class BatchSweep(Plugin):
    """The safety net (every 60 s on the leader): batches changed in the last day whose
    ledger is not closed (``handle_exhausted`` not fired, or members still unfinished) and
    that nothing touched for 10 s are recounted from their members, and the handlers due are
    fired. The ack-time ledger is the usual path; this repairs a ledger a raw query or a lost
    transaction left wrong."""

    name = "batch_sweep"
    interval = 60.0
    #: Batches recounted per run.
    limit = 100

    def run(self, node, engine, now):
        batches = Batch.objects.using(engine.alias)
        quiet = now - datetime.timedelta(seconds=10)
        recent = now - datetime.timedelta(days=1)
        ids = list(batches.filter(updated_at__lt=quiet, updated_at__gte=recent)
                   .order_by("updated_at").values_list("id", "fired")[:self.limit * 5])
        open_ids = [pk for pk, fired in ids
                    if not fired & HANDLER_BITS["handle_exhausted"]][:self.limit]
        repaired = fired = 0
        for batch_id in open_ids:
            with transaction.atomic(using=engine.alias):
                batch = batches.locked([batch_id]).get(batch_id)
                if batch is None:
                    continue
                # A right ledger was judged at its last change (deletes fire nothing): only a
                # repaired one is judged again. Either way it is saved, which moves it to the
                # back of the sweep's order.
                off = recount(batch, engine.alias)
                due = _due(batch, set()) if off else []
                repaired += off
                fired += len(due)
                _insert_callbacks(due, engine.alias)
                _save(batch, engine.alias, counters=True)
        if repaired or fired:
            logger.warning("batch sweep: %d ledgers recounted, %d handlers fired", repaired,
                           fired)
        return {"recounted": repaired, "fired": fired}
