"""Chunk workers: jobs inserted one by one, processed in groups, each still tracked on its own.

::

    class SMSWorker(ChunkWorker):
        queue = "sms"
        size = 100                     # jobs per chunk (default 100)
        gather_timeout = 1             # seconds the oldest job waits for a full chunk (1 s)

        def timeout(self, job):        # optional: how long the whole chunk may run
            return 30

        def process(self, jobs):
            results = sms_gateway.send_many([(j.args["to"], j.args["text"]) for j in jobs])
            failed = [job for job, ok in zip(jobs, results) if not ok]
            if failed:
                return ChunkError("gateway refused", failed)   # those retry, the rest complete

A fetched chunk job becomes the *leader* of a chunk: in its ``perform`` it claims up to
``size - 1`` more available jobs of its partition (``by``: by default its worker, in its queue;
or args or meta keys) with the fetch's own locking, so two leaders never take the same job; the
claimed members are ``executing``, attempted by the leader's producer (their ``attempted_by``
names the leader too). It calls ``process(jobs)`` when the chunk is full, or when its oldest job
has waited ``gather_timeout`` — meanwhile it sleeps until jobs of its queue are inserted, never
spinning. Members count against nothing but their leader's slot, so several chunks of one
worker run in parallel up to the queue's limit.

``process`` returns None or any value (every job completes), or ``ChunkError(reason, jobs)``,
``ChunkDiscard(reason, jobs)``, ``ChunkCancel(reason, jobs)``, ``ChunkSnooze(seconds, jobs)``,
or a list of these: the jobs named get that outcome, each with its own attempts, backoff and
errors; the others complete. An exception fails every job of the chunk, each on its own
attempts. The members' outcomes are written together (one statement per kind); the leader's
goes the usual way.

The members are an :class:`~django_jobs.execution.attempts.AttemptGroup` of the leader's
attempt: every member is an attempt of its own for job features, as the leader is (encrypted
args opened and structured args cast before ``process`` sees them, hooks run per job, a member
whose deadline passed cancelled and left out of ``process``), and the group writes each member
exactly once.

The leader's ``timeout(job)`` bounds the whole chunk (gathering and ``process``), as it bounds
any job's ``perform``: when it passes, the leader fails with the timeout error and so does every
member whose attempt had begun (each on its own attempts); members not begun go back to
``available``. Cancelling the leader (or stopping its node) stops the chunk: members whose
outcome was not decided go back to ``available``, their attempt not counted. A member a feature
decided before ``process`` keeps that outcome in every case. Cancelling another member does not
stop the chunk (as in Oban): that member stays cancelled, whatever ``process`` does with it. A
node killed during ``process`` leaves leader and members ``executing`` under its producer: the
lifeline rescues them all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..durations import to_seconds
from ..engines import get_engine, wakeup
from ..exceptions import ConfigurationError, JobsError
from ..execution.attempts import AttemptGroup, begin, in_database
from ..execution.interrupt import JobInterrupted, JobTimeout, current_running, on_interrupt
from ..outcome import Outcome
from ..models.job import Job, JobState
from ..results import Cancel, Discard, Snooze
from ..worker import Worker
from .partition import keys_of, parse_by


@dataclass
class ChunkResult:
    """The outcome ``process`` gives some of its jobs (the others complete)."""

    reason: Any
    jobs: Sequence[Job] = field(default_factory=list)


class ChunkError(ChunkResult):
    """These jobs failed: each retries after its own backoff, or is discarded when it is out
    of attempts."""


class ChunkDiscard(ChunkResult):
    """These jobs are discarded."""


class ChunkCancel(ChunkResult):
    """These jobs are cancelled."""


class ChunkSnooze(ChunkResult):
    """These jobs run again after ``reason`` seconds (a duration), not counted as a failure."""


class ChunkFailed(JobsError):
    """The leader's own failure in its chunk (its error entry names the reason)."""


class ChunkWorker(Worker):
    """Base of chunk workers: class options ``size``, ``gather_timeout``, ``by``; the work in
    :meth:`process`; ``timeout(job)``, as for any worker, bounds the leader's whole attempt."""

    #: Most jobs per chunk, leader included.
    size: int = 100
    #: How long the oldest job of a chunk waits for the chunk to fill (seconds, a timedelta
    #: or ``(n, unit)``).
    gather_timeout: Any = 1.0
    #: Which jobs share a chunk besides the worker (:mod:`django_jobs.pro.partition`):
    #: ``None`` (jobs of this worker in its queue), or ``{"args": key or [keys]}`` /
    #: ``{"meta": ...}`` (or both), whose values must match the leader's.
    by: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        path = cls.worker_path
        if not callable(cls.timeout):
            raise ConfigurationError(
                f"{path}: timeout = {cls.timeout!r}: a chunk worker's timeout is the method "
                f"timeout(self, job), which bounds a chunk's whole run; set how long a chunk "
                f"waits to fill with gather_timeout = {cls.timeout!r}")
        if isinstance(cls.size, bool) or not isinstance(cls.size, int) or not \
                1 <= cls.size <= 10_000:
            raise ConfigurationError(f"{path}: chunk size must be an integer from "
                                     f"1 to 10,000, not {cls.size!r}")
        try:
            cls._gather_seconds = to_seconds(cls.gather_timeout, "chunk gather_timeout")
        except Exception as exc:
            raise ConfigurationError(f"{path}: {exc}") from None
        try:
            cls._chunk_keys = keys_of(parse_by(cls.by, "chunk by")) if cls.by is not None \
                else []
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc}") from None
        if getattr(cls, "encrypted", None) and any(s == "args" for s, _ in cls._chunk_keys):
            raise ConfigurationError(f"{path}: an encrypted worker cannot chunk by args (they "
                                     f"are sealed in the table); chunk by meta keys")

    def process(self, jobs: list[Job]) -> Any:
        """The work of a chunk; see the module docstring for what it may return."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement process(jobs)")

    def perform(self, job: Job) -> Any:
        """The leader's attempt: gather the chunk, process it, write the members' outcomes,
        return the leader's result."""
        return run_chunk(self, job)


def partition_filter(worker: ChunkWorker, leader: Job) -> Q | None:
    """Besides the worker, what jobs must share to be in ``leader``'s chunk: its values of
    the ``by`` keys (None without ``by``)."""
    if not type(worker)._chunk_keys:
        return None
    where = Q()
    for source, key in type(worker)._chunk_keys:
        values = leader.args if source == "args" else leader.meta
        if not isinstance(values, Mapping):
            raise ChunkFailed(f"chunk by {source}: the leader's {source} is not a JSON object")
        value = values.get(key)
        if value is None:  # a JSON null and a missing key are the same "no value"
            where &= Q(**{f"{source}__{key}__isnull": True}) | Q(**{f"{source}__{key}": None})
        else:
            where &= Q(**{f"{source}__{key}": value})
    return where


def run_chunk(worker: ChunkWorker, leader: Job) -> Any:
    """Gather, process and settle one chunk led by ``leader`` (in its attempt's thread).

    The members are an :class:`AttemptGroup`: each gets an attempt of its own (its features'
    ``before`` steps run before ``process``; one that short-circuits or fails decides that
    member's outcome, and ``process`` does not see it), and the group writes each member's
    outcome exactly once, whatever stops the chunk: a timeout of the leader fails the members
    begun; a cancel or the node's shutdown puts back those whose outcome was not decided; an
    exception fails them. Inline mode and ``perform_job`` run the leader alone."""
    group = AttemptGroup(worker, using=leader._state.db)
    try:
        if in_database():
            _gather(worker, leader, group)
        members = group.begin()
        group.write()  # members a feature decided: written now, not after process
        jobs = [leader, *members]
        result = worker.process(jobs)
        verdicts, strangers = _verdicts(result, jobs)
        for job in members:
            _settle(group, job, verdicts.get(id(job)))
        group.write()
        if strangers:
            raise ChunkFailed("; ".join(strangers))
        return _leader_result(verdicts.get(id(leader)))
    except JobTimeout as exc:
        running = current_running()
        seconds = running.timeout if running is not None else None
        group.fail(exc, f"JobTimeout: the chunk of job {leader.pk} ({leader.worker}) ran "
                        f"longer than its timeout of {seconds} s", not_begun=PUT_BACK)
        raise
    except JobInterrupted:  # the leader cancelled, the node shutting down
        group.abandon(PUT_BACK)
        raise
    except BaseException as exc:  # process raised (or exited), or gathering failed
        group.fail(exc, not_begun=PUT_BACK)  # each member fails too, on its own attempts
        raise


#: The error entry of members put back when their chunk was stopped.
PUT_BACK = "Put back: the chunk's leader was stopped before its chunk finished."


def _gather(worker: ChunkWorker, leader: Job, group: AttemptGroup) -> None:
    """Claim up to ``size - 1`` members into ``group`` (shielded there: every claimed job is
    the group's even when the leader is interrupted), waiting (woken by inserts into the queue,
    or by an interrupt of the leader; never spinning) until the chunk is full or its oldest job
    has waited ``gather_timeout``."""
    wanted, timeout = type(worker).size - 1, type(worker)._gather_seconds
    engine = get_engine(leader._state.db)
    where = partition_filter(worker, leader)
    attempted_by = [*(leader.attempted_by or ["", ""])[:2], leader.pk]
    inserted = threading.Event()
    wakeup.register(leader.queue, inserted.set)
    try:
        with on_interrupt(inserted.set):
            # A job made available before its time (drain_queue(with_scheduled=True)) has
            # waited from now: no chunk waits longer than ``timeout`` after it starts.
            now = timezone.now()
            oldest = min(leader.scheduled_at or now, now)
            while True:
                inserted.clear()
                if len(group) < wanted:
                    claimed = group.claim(lambda: engine.claim_jobs(
                        leader.queue, wanted - len(group), attempted_by, timezone.now(),
                        leader.worker, where))
                    oldest = min([oldest, *(job.scheduled_at for job in claimed)])
                    oldest = min(oldest, timezone.now())
                left = timeout - (timezone.now() - oldest).total_seconds()
                if len(group) >= wanted or left <= 0:
                    return
                inserted.wait(left)
    finally:
        wakeup.unregister(leader.queue, inserted.set)


def _verdicts(result: Any, jobs: list[Job]) -> tuple[dict[int, tuple[str, Any]], list[str]]:
    """What ``process``'s result says of each job it names: (kind, reason) by ``id(job)``;
    and what it says of jobs that are not in the chunk (they fail the leader once the
    members' outcomes are written)."""
    results = result if isinstance(result, list) and all(
        isinstance(r, ChunkResult) for r in result) else [result]
    ids = {id(job) for job in jobs}
    verdicts: dict[int, tuple[str, Any]] = {}
    strangers = []
    for item in results:
        if not isinstance(item, ChunkResult):
            continue
        kind = {ChunkError: "error", ChunkDiscard: "discard", ChunkCancel: "cancel",
                ChunkSnooze: "snooze"}[type(item)]
        for job in item.jobs:
            if id(job) in ids:
                verdicts[id(job)] = (kind, item.reason)
            else:
                strangers.append(f"{type(item).__name__} names {job!r}, which is not a job of "
                                 f"this chunk")
    return verdicts, strangers


def _settle(group: AttemptGroup, job: Job, verdict: tuple[str, Any] | None) -> Outcome:
    """End a member's attempt with what ``process`` said of it (a verdict that cannot be
    applied, such as a bad snooze duration, fails the member with that error)."""
    kind, reason = verdict or ("complete", None)
    if kind == "error":
        exc = reason if isinstance(reason, BaseException) else ChunkFailed(reason)
        return group.end(job, error=exc, text=f"ChunkError: {reason}")
    try:
        result = _control_result(kind, reason)
    except Exception as exc:
        return group.end(job, error=exc)
    return group.end(job, result)


def _control_result(kind: str, reason: Any) -> Any:
    return {"complete": None, "discard": Discard(reason), "cancel": Cancel(reason),
            "snooze": Snooze(reason) if kind == "snooze" else None}[kind]


def _leader_result(verdict: tuple[str, Any] | None) -> Any:
    if verdict is None:
        return None
    kind, reason = verdict
    if kind == "error":
        raise ChunkFailed(reason)
    return _control_result(kind, reason)


def chunk_of(job: Job) -> int | None:
    """The id of the leader whose chunk ran ``job`` last (None for a leader, or a job that
    never ran in a chunk): members' ``attempted_by`` names their leader."""
    by = job.attempted_by
    return by[2] if isinstance(by, list) and len(by) > 2 else None


def perform_chunk(worker: type[ChunkWorker], args_list: Iterable[dict]) -> Any:
    """Testing: build jobs of ``worker`` from ``args_list`` as ``new()`` would and run them as
    one chunk, in this thread, without the database; return what ``process`` returned.

    Each job's features run their ``before`` steps as in a real chunk (args opened and cast,
    hooks); a job one of them decides (a hook's ``Cancel``, say) is left out of ``process``."""
    instance = worker()
    ready = []
    for args in args_list:
        job = worker.new(args)
        job.state = JobState.EXECUTING
        job.attempt = 1
        job.attempted_at = timezone.now()
        attempt, outcome = begin(job, instance)
        if outcome is None:
            ready.append(attempt)
        elif attempt.error is not None:
            raise attempt.error
    return instance.process([attempt.job for attempt in ready])
