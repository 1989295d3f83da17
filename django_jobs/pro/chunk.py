"""Chunk workers: jobs inserted one by one, processed in groups, each still tracked on its own.

::

    class SMSWorker(ChunkWorker):
        queue = "sms"
        size = 100                     # jobs per chunk (default 100)
        timeout = 1                    # seconds the oldest job waits for a full chunk (1 s)

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
has waited ``timeout`` — meanwhile it sleeps until jobs of its queue are inserted, never
spinning. Members count against nothing but their leader's slot, so several chunks of one
worker run in parallel up to the queue's limit.

``process`` returns None or any value (every job completes), or ``ChunkError(reason, jobs)``,
``ChunkDiscard(reason, jobs)``, ``ChunkCancel(reason, jobs)``, ``ChunkSnooze(seconds, jobs)``,
or a list of these: the jobs named get that outcome, each with its own attempts, backoff and
errors; the others complete. An exception fails every job of the chunk, each on its own
attempts. The members' outcomes are written together (one statement per kind); the leader's
goes the usual way.

Every member is an attempt of its own for job features, as the leader is: encrypted args are
opened and structured args cast before ``process`` sees them, hooks run per job, and a member
whose deadline passed is cancelled and left out of ``process``.

Cancelling the leader (or stopping its node) stops the chunk: members whose ``process`` had not
finished go back to ``available``. Cancelling another member does not stop the chunk (as in
Oban): that member stays cancelled, whatever ``process`` does with it. A node killed during
``process`` leaves leader and members ``executing`` under its producer: the lifeline rescues
them all.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..durations import to_seconds
from ..engines import get_engine, wakeup
from ..transitions import ack
from ..exceptions import ConfigurationError, JobsError
from ..execution.executor import abandon_attempt, begin_attempt, end_attempt, put_back
from ..execution.interrupt import JobInterrupted, current_running, on_interrupt, shielded
from ..outcome import Outcome
from ..features import Attempt
from ..models.job import Job, JobState
from ..results import Cancel, Discard, Snooze
from ..worker import Worker


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
    """Base of chunk workers: class options ``size``, ``timeout``, ``by``; the work in
    :meth:`process`."""

    #: Most jobs per chunk, leader included.
    size: int = 100
    #: How long the oldest job of a chunk waits for the chunk to fill (seconds, a timedelta
    #: or ``(n, unit)``).
    timeout: Any = 1.0
    #: Which jobs share a chunk: ``None`` (jobs of this worker in its queue), or
    #: ``{"args": key or [keys]}`` / ``{"meta": ...}`` (or both), whose values must match the
    #: leader's.
    by: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.size, bool) or not isinstance(cls.size, int) or not \
                1 <= cls.size <= 10_000:
            raise ConfigurationError(f"{cls.worker_path}: chunk size must be an integer from "
                                     f"1 to 10,000, not {cls.size!r}")
        try:
            cls._chunk_timeout = to_seconds(cls.timeout, "chunk timeout")
        except Exception as exc:
            raise ConfigurationError(f"{cls.worker_path}: {exc}") from None
        cls._chunk_keys = _partition(cls)

    def process(self, jobs: list[Job]) -> Any:
        """The work of a chunk; see the module docstring for what it may return."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement process(jobs)")

    def perform(self, job: Job) -> Any:
        """The leader's attempt: gather the chunk, process it, write the members' outcomes,
        return the leader's result."""
        return run_chunk(self, job)


def _partition(worker: type) -> list[tuple[str, str]]:
    by = worker.by
    if by is None:
        return []
    if not isinstance(by, dict) or not by or set(by) - {"args", "meta"}:
        raise ConfigurationError(f"{worker.worker_path}: chunk by must be None or a dict of "
                                 f"'args' and/or 'meta' keys, not {by!r}")
    keys = []
    for source, names in by.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, (list, tuple)) or not names or not all(
                isinstance(n, str) and n for n in names):
            raise ConfigurationError(f"{worker.worker_path}: chunk by {source}: give a key or "
                                     f"a list of keys, not {names!r}")
        keys += [(source, name) for name in names]
    return keys


def partition_filter(worker: ChunkWorker, leader: Job) -> Q | None:
    """Besides the worker, what jobs must share to be in ``leader``'s chunk: its values of
    the ``by`` keys (None without ``by``)."""
    if not type(worker)._chunk_keys:
        return None
    where = Q()
    for source, key in type(worker)._chunk_keys:
        value = (leader.args if source == "args" else leader.meta).get(key)
        if value is None:  # a JSON null and a missing key are the same "no value"
            where &= Q(**{f"{source}__{key}__isnull": True}) | Q(**{f"{source}__{key}": None})
        else:
            where &= Q(**{f"{source}__{key}": value})
    return where


def run_chunk(worker: ChunkWorker, leader: Job) -> Any:
    """Gather, process and settle one chunk led by ``leader`` (in its attempt's thread).

    Each member gets an attempt of its own: its job features' ``before`` steps run before
    ``process`` (decrypting, casting args, checking a deadline; one that short-circuits or
    fails decides that member's outcome, and ``process`` does not see it) and their ``after``
    steps once its outcome is known, as for a job run alone. Claiming members and writing their
    outcomes are shielded from interruption, so a member is never claimed and forgotten, nor
    written and then put back."""
    members: list[Job] = []
    early: list[Outcome] = []        # members a feature decided before process
    ready: list[Attempt] = []        # members for process
    written = False
    try:
        running = current_running()
        if running is not None and running.written:  # inline, perform_job: a chunk of one
            _gather(worker, leader, type(worker).size - 1, type(worker)._chunk_timeout,
                    members)
            for job in members:
                attempt, outcome = begin_attempt(job, worker)
                if outcome is None:
                    ready.append(attempt)
                else:
                    early.append(outcome)
        jobs = [leader, *(attempt.job for attempt in ready)]
        try:
            result = worker.process(jobs)
        except Exception as exc:
            text = "".join(traceback.format_exception(exc))
            outcomes = [end_attempt(attempt, error=exc, text=text) for attempt in ready]
            with shielded():
                _write(early + outcomes)
                written = True
            raise
        verdicts, strangers = _verdicts(result, jobs)
        outcomes = [_ended(attempt, verdicts.get(id(attempt.job))) for attempt in ready]
        with shielded():  # written and known to be, or the interrupt waits
            _write(early + outcomes)
            written = True
        if strangers:
            raise ChunkFailed("; ".join(strangers))
        return _leader_result(verdicts.get(id(leader)))
    except JobInterrupted:
        # Stopped (the leader cancelled, the node shutting down, a timeout): members whose
        # outcome is not written go back for another chunk; a feature's verdict on a member
        # before process stands.
        if members and not written:
            begun = {attempt.job.pk for attempt in ready} | {outcome.id for outcome in early}
            _write(early + [abandon_attempt(attempt, PUT_BACK) for attempt in ready]
                   + [put_back(job, timezone.now(), PUT_BACK)
                      for job in members if job.pk not in begun])
        raise


#: The error entry of members put back when their chunk was stopped.
PUT_BACK = "Put back: the chunk's leader was stopped before its chunk finished."


def _write(outcomes: list[Outcome]) -> None:
    """Write the members' outcomes through the door (one statement per kind)."""
    if outcomes:
        now = timezone.now()
        for outcome in outcomes:  # they ended together: one time (completions share a statement)
            outcome.at = now
        ack(outcomes, using=outcomes[0].job._state.db)


def _gather(worker: ChunkWorker, leader: Job, wanted: int, timeout: float,
            members: list[Job]) -> None:
    """Claim up to ``wanted`` members into ``members`` (the caller's list: every claimed job is
    in it even when the leader is interrupted), waiting (woken by inserts into the queue, or by an
    interrupt of the leader; never spinning) until the chunk is full or its oldest job has
    waited ``timeout``."""
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
                if len(members) < wanted:
                    with shielded():  # claimed rows are remembered, or the interrupt waits
                        claimed = engine.claim_jobs(leader.queue, wanted - len(members),
                                                    attempted_by, timezone.now(),
                                                    leader.worker, where)
                        members += claimed
                    oldest = min([oldest, *(job.scheduled_at for job in claimed)])
                    oldest = min(oldest, timezone.now())
                left = timeout - (timezone.now() - oldest).total_seconds()
                if len(members) >= wanted or left <= 0:
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


def _ended(attempt: Attempt, verdict: tuple[str, Any] | None) -> Outcome:
    """A ready member's outcome from what ``process`` said of it (a verdict that cannot be
    applied, such as a bad snooze duration, fails the member with that error)."""
    kind, reason = verdict or ("complete", None)
    if kind == "error":
        exc = reason if isinstance(reason, BaseException) else ChunkFailed(reason)
        return end_attempt(attempt, error=exc, text=f"ChunkError: {reason}")
    try:
        result = _control_result(kind, reason)
    except Exception as exc:
        return end_attempt(attempt, error=exc)
    return end_attempt(attempt, result)


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
        attempt, outcome = begin_attempt(job, instance)
        if outcome is None:
            ready.append(attempt)
        elif attempt.error is not None:
            raise attempt.error
    return instance.process([attempt.job for attempt in ready])
