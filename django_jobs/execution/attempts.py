"""Attempts, one step at a time: for the executor, and for work that runs several jobs at once.

An attempt of a job has three steps: :func:`begin` runs its job features' ``before`` steps
(decrypt, cast args, check a deadline, ``before_process`` hooks; one may decide the outcome
at once), the work runs, and :func:`end` turns what the work gave (a result, or an error) into
the :class:`~django_jobs.outcome.Outcome` that is written, after the features'
``after`` steps. :func:`~django_jobs.execution.executor.execute` runs these steps for one job
around ``perform``.

A worker that runs several jobs inside an attempt of its own — a chunk's leader runs its
members' ``process`` — gives each of them an attempt with an :class:`AttemptGroup`, so that
every feature sees every job as it sees a job run alone, and no job the group took is ever
left ``executing``::

    group = AttemptGroup(worker, using=leader._state.db)    # outcomes written there
    try:
        group.claim(lambda: engine.claim_jobs(...))         # shielded: claimed and remembered
        jobs = group.begin()                                # the jobs ready for the work
        results = work(jobs)
        for job, result in zip(jobs, results):
            group.end(job, result)                          # or error=exc
        group.write()                                       # shielded: written once
    except JobInterrupted:
        group.abandon("Put back: ...")                      # the rest goes back, uncounted
        raise

Everything here reads the job row defensively: a row written behind django_jobs's back (meta
that is not a JSON object, errors that are not a list) gives a failed attempt whose error names
the cause, never an exception out of the executor.
"""

from __future__ import annotations

import datetime
import logging
import random
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.utils import timezone

from .. import features
from ..features import Attempt
from ..models import JobState, error_entry
from ..outcome import Outcome
from ..results import Cancel, Discard, Snooze
from ..transitions import ack
from .interrupt import current_running, shielded

logger = logging.getLogger("django_jobs.executor")

#: The state an attempt ended in, as features and hooks name it, by the job's new state.
ATTEMPT_STATE = {
    JobState.COMPLETED: "complete",
    JobState.SCHEDULED: "snooze",
    JobState.CANCELLED: "cancel",
    JobState.DISCARDED: "discard",
    JobState.RETRYABLE: "error",
}


class BadJobRow(ValueError):
    """A column of the job's row holds a value django_jobs cannot use (meta that is not a JSON
    object, say): the attempt fails with this error, naming the column."""


def default_backoff(attempt: int) -> float:
    """Oban's default backoff after the ``attempt``-th failure: ``15 + 2 ** attempt`` seconds,
    plus up to 10 % random jitter so that jobs failing together do not retry together."""
    base = 15 + 2 ** min(attempt, 20)
    return base + random.uniform(0, base * 0.1)


def in_database() -> bool:
    """Whether the attempt running in this thread is one whose outcome is written to the
    database (``runjobs``, ``drain_queue``): work inside it may then claim and write other
    jobs (an :class:`AttemptGroup`). False in inline mode and ``perform_job`` (the job may not
    even be a row: a chunk runs alone there), and outside an attempt."""
    running = current_running()
    return running is not None and not running.detached


# -- the steps of one attempt ---------------------------------------------------------------------

def begin(job: Any, worker: Any) -> tuple[Attempt, Outcome | None]:
    """Run the ``before`` steps of ``job``'s attempt by the ``worker`` instance. Returns the
    attempt, and its outcome when a feature short-circuited the work or failed (its ``after``
    steps have run then: the attempt is over); None when the job is ready for the work."""
    attempt = Attempt(job, worker)
    return attempt, run_before(attempt, features.pipeline(type(worker)))


def run_before(attempt: Attempt, pipeline: features.Pipeline) -> Outcome | None:
    """The ``before`` steps of ``attempt``; its outcome (``after`` steps run) when one of them
    decided it or failed, None when the work may run."""
    try:
        for feature, config in pipeline:
            result = feature.before(attempt, config)
            if result is not None:
                return end(attempt, result)
    except Exception as exc:
        return end(attempt, error=exc)
    return None


def end(attempt: Attempt, result: Any = None, *, error: BaseException | None = None,
        text: str | None = None) -> Outcome:
    """The outcome of an attempt that ended with ``result`` (None or a value: completed;
    ``Snooze``, ``Cancel``, ``Discard``) or with ``error`` (``text``, its traceback or reason,
    is what is recorded; by default the formatted exception): retryable with the worker's
    backoff, or discarded when out of attempts. The ``after`` steps run, and the meta updates
    they asked for are added to what is written. Never raises for what the job holds."""
    if error is not None:
        outcome = failure(attempt, error, text or format_error(error))
    else:
        attempt.result = result
        outcome = outcome_of(attempt)
    outcome = run_after(attempt, outcome, features.pipeline(type(attempt.worker)))
    return with_meta_updates(attempt, outcome)


def abandon(attempt: Attempt, reason: str) -> Outcome:
    """The outcome of an attempt given up before its work finished: back to ``available``,
    not counted (:func:`put_back`); the ``after`` steps run with state None to tidy up."""
    outcome = put_back(attempt.job, timezone.now(), reason)
    return run_after(attempt, outcome, features.pipeline(type(attempt.worker)))


def put_back(job: Any, now: datetime.datetime, reason: str) -> Outcome:
    """An attempt the node abandons: back to ``available``, the attempt not counted."""
    return Outcome(job.pk, JobState.AVAILABLE, now, {
        "attempt": max(0, job.attempt - 1),
        "errors": [*errors_of(job, now), error_entry(job.attempt, now, reason)]}, job)


# -- pieces the executor composes -----------------------------------------------------------------

def outcome_of(attempt: Attempt) -> Outcome:
    """The outcome ``attempt.result`` gives: a snooze, a cancel, a discard, or a completion (a
    snooze of a job whose meta is not a JSON object fails the attempt: it cannot be counted)."""
    job, result = attempt.job, attempt.result
    job.unsaved_error = None
    now = timezone.now()
    if isinstance(result, Snooze):
        if not isinstance(job.meta, Mapping):
            return failure(attempt, BadJobRow(_not_an_object("meta", job.meta)),
                           f"BadJobRow: cannot snooze: {_not_an_object('meta', job.meta)}")
        meta = dict(job.meta)
        meta["snoozed"] = meta.get("snoozed", 0) + 1
        # A snooze is not a failure: give the attempt back by raising max_attempts (Oban).
        return Outcome(job.pk, JobState.SCHEDULED, now, {
            "scheduled_at": now + datetime.timedelta(seconds=result.seconds),
            "max_attempts": job.max_attempts + 1, "meta": meta}, job)
    if isinstance(result, Cancel):
        return Outcome(job.pk, JobState.CANCELLED, now, {
            "errors": [*errors_of(job, now), _entry(job, now, f"Cancelled: {result.reason}")]},
            job)
    if isinstance(result, Discard):
        return Outcome(job.pk, JobState.DISCARDED, now, {
            "errors": [*errors_of(job, now), _entry(job, now, f"Discarded: {result.reason}")]},
            job)
    return Outcome(job.pk, JobState.COMPLETED, now, job=job)


def failure(attempt: Attempt, exc: BaseException, text: str) -> Outcome:
    """The outcome of a failed attempt, remembered on ``attempt`` (``error``, ``traceback``)
    for the ``job_exception`` signal."""
    attempt.error = exc
    attempt.traceback = text
    # Oban's unsaved_error: the exception of the attempt being decided, for backoff(), the
    # after_process hooks and the features' after steps.
    attempt.job.unsaved_error = exc
    return failed(attempt.job, text, attempt.worker)


def failed(job: Any, text: str, worker: Any = None) -> Outcome:
    """A failed attempt: retryable after ``worker``'s backoff (the default one without a
    worker: the run itself broke), or discarded when out of attempts; ``text`` recorded in the
    job's errors."""
    now = timezone.now()
    errors = [*errors_of(job, now), _entry(job, now, text)]
    if job.attempt >= job.max_attempts:
        return Outcome(job.pk, JobState.DISCARDED, now, {"errors": errors}, job)
    delay = default_backoff(job.attempt)
    if worker is not None:
        try:
            delay = float(worker.backoff(job))
        except Exception:
            logger.exception("backoff() of %s failed; using the default", job.worker)
    return Outcome(job.pk, JobState.RETRYABLE, now, {
        "scheduled_at": now + datetime.timedelta(seconds=max(0.0, delay)), "errors": errors},
        job)


def run_after(attempt: Attempt, outcome: Outcome, pipeline: features.Pipeline) -> Outcome:
    """The features' ``after`` steps, ``perform``'s side first. One that raises turns the
    attempt into a failure, which the steps after it see. For an attempt put back (the node
    stopped), ``attempt.state`` is None and a failing step is only logged."""
    attempt.state = ATTEMPT_STATE.get(outcome.state)
    for feature, config in reversed(pipeline):
        try:
            feature.after(attempt, config)
        except Exception as exc:
            if attempt.state is None:
                logger.exception("job feature %s failed after job %s was put back",
                                 feature.name, attempt.job.pk)
                continue
            attempt.result = None
            outcome = failure(attempt, exc, format_error(exc))
            attempt.state = ATTEMPT_STATE.get(outcome.state)
    return outcome


def with_meta_updates(attempt: Attempt, outcome: Outcome) -> Outcome:
    """``outcome`` with the meta keys the features asked for (``Attempt.write_meta``) added to
    what it writes; a failure naming the cause when the job's meta is not a JSON object."""
    if not attempt.meta_updates or outcome.state == JobState.AVAILABLE:
        return outcome
    meta = outcome.changes.get("meta", attempt.job.meta)
    if not isinstance(meta, Mapping):
        keys = ", ".join(sorted(attempt.meta_updates))
        text = f"BadJobRow: cannot write meta keys {keys}: {_not_an_object('meta', meta)}"
        attempt.meta_updates = {}
        return failure(attempt, BadJobRow(text), text)
    outcome.changes["meta"] = {**meta, **attempt.meta_updates}
    return outcome


def errors_of(job: Any, now: datetime.datetime) -> list:
    """The job's error entries, to append to. A row whose ``errors`` is not a list keeps what
    it held as the text of one entry (nothing is lost; the next entries can be added)."""
    errors = job.errors
    if isinstance(errors, list):
        return errors
    if errors is None:
        return []
    return [error_entry(job.attempt, now, f"(the job's errors were not a JSON list; they "
                                          f"held: {errors!r})")]


def format_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _not_an_object(column: str, value: Any) -> str:
    kind = {list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)
    return f"the job's {column} is not a JSON object (it is {kind})"


def _entry(job: Any, now: datetime.datetime, text: str) -> dict:
    return error_entry(job.attempt, now, text)


# -- several jobs in one attempt ------------------------------------------------------------------

class _Member:
    """One job of a group: its attempt once begun, its outcome once decided, and whether that
    outcome is written."""

    __slots__ = ("attempt", "job", "outcome", "written")

    def __init__(self, job: Any) -> None:
        self.job = job
        self.attempt: Attempt | None = None
        self.outcome: Outcome | None = None
        self.written = False


class AttemptGroup:
    """The attempts of jobs that a worker runs together, inside an attempt of its own (a
    chunk's members, in their leader's attempt).

    The contract: every job the group takes (:meth:`claim`) ends written by the group exactly
    once, through ``write`` — with the outcome of its attempt (decided at :meth:`begin` by a
    feature, or by :meth:`end`), or put back to ``available`` with its attempt not counted
    (:meth:`abandon`), or failed with the error that stopped the work (:meth:`fail`). Claiming
    and writing are :func:`~django_jobs.execution.interrupt.shielded`: an interrupt of the
    running attempt (a cancel, a timeout, the node's shutdown) waits until the claimed jobs are
    remembered, or the outcomes written, so a job is never claimed and forgotten, nor written
    and then put back. Call :meth:`abandon` or :meth:`fail` when the work is stopped: the jobs
    whose outcome was decided keep it.

    ``worker`` is the worker instance whose features the attempts run (the group's jobs are
    its jobs); ``using`` is the database alias of the jobs, where :meth:`write` acknowledges
    their outcomes through the door (:func:`django_jobs.transitions.ack`: only jobs still
    ``executing`` change, so a member cancelled from outside stays cancelled). A group is used
    by one thread.
    """

    def __init__(self, worker: Any, *, using: str | None = None) -> None:
        self.worker = worker
        self.using = using
        self._members: list[_Member] = []
        #: The members ready for the work, by ``id()`` of the job :meth:`begin` returned.
        self._ready: dict[int, _Member] = {}

    @property
    def jobs(self) -> list[Any]:
        """Every job the group took, in the order it took them."""
        return [member.job for member in self._members]

    def __len__(self) -> int:
        return len(self._members)

    def claim(self, fetch: Callable[[], Sequence[Any]]) -> list[Any]:
        """Take the jobs ``fetch()`` claims (rows it made ``executing`` for this attempt, such
        as ``Engine.claim_jobs``), shielded: once claimed, they are the group's. Returns them."""
        with shielded():
            claimed = list(fetch())
            self._members += [_Member(job) for job in claimed]
        return claimed

    def begin(self) -> list[Any]:
        """Begin the attempt of every job taken and not begun yet (their ``before`` steps, see
        :func:`begin`); return the jobs ready for the work, in order (as the features left them:
        args opened and cast). A job a feature decided (a deadline passed, a hook's
        ``Cancel``, args that do not decrypt) is not among them: its outcome waits to be
        written."""
        ready = []
        pipeline = features.pipeline(type(self.worker))
        for member in self._members:
            if member.attempt is not None:
                if member.outcome is None:
                    ready.append(member.attempt.job)
                continue
            member.attempt = Attempt(member.job, self.worker)
            member.outcome = run_before(member.attempt, pipeline)
            if member.outcome is None:
                ready.append(member.attempt.job)
                self._ready[id(member.attempt.job)] = member
        return ready

    def end(self, job: Any, result: Any = None, *, error: BaseException | None = None,
            text: str | None = None) -> Outcome:
        """End the attempt of ``job`` (one :meth:`begin` returned) with ``result`` or ``error``
        (see :func:`end`); the outcome is written by the next :meth:`write`. Shielded: an
        interrupt meanwhile never leaves the ``after`` steps half run."""
        member = self._ready.get(id(job))
        if member is None or member.attempt is None or member.attempt.job is not job:
            raise ValueError(f"job {getattr(job, 'pk', job)!r} is not a job of this group "
                             f"ready for the work")
        if member.outcome is not None:
            raise ValueError(f"the attempt of job {job.pk} has already ended")
        with shielded():
            member.outcome = end(member.attempt, result, error=error, text=text)
        return member.outcome

    def write(self) -> None:
        """Write every decided outcome not written yet (one ``ack``), shielded."""
        pending = [m for m in self._members if m.outcome is not None and not m.written]
        if not pending:
            return
        with shielded():  # written and known to be, or the interrupt waits
            now = timezone.now()
            outcomes = [member.outcome for member in pending]
            for outcome in outcomes:  # they ended together (completions share a statement)
                outcome.at = now
            ack(outcomes, using=self.using)
            for member in pending:
                member.written = True

    def abandon(self, reason: str) -> None:
        """The work stopped without failing (a cancel of the running attempt, the node's
        shutdown): every job whose outcome is not decided goes back to ``available``, its
        attempt not counted, ``reason`` in its errors (a begun attempt's ``after`` steps run
        with state None); then everything not yet written is written."""
        with shielded():  # decided and written, or the interrupt waits
            now = timezone.now()
            for member in self._members:
                if member.outcome is None:
                    member.outcome = (abandon(member.attempt, reason)
                                      if member.attempt is not None
                                      else put_back(member.job, now, reason))
            self.write()

    def fail(self, error: BaseException, text: str | None = None, *,
             not_begun: str = "Put back: the work of its group failed before it began.") -> None:
        """The work failed (an exception, a timeout): every begun attempt whose outcome is not
        decided fails with ``error`` (``text`` recorded; by default the formatted exception),
        each on its own attempts and backoff; a job taken but not begun goes back to
        ``available``, uncounted, with the reason ``not_begun``; then everything not yet
        written is written."""
        with shielded():  # decided and written, or the interrupt waits
            now = timezone.now()
            for member in self._members:
                if member.outcome is not None:
                    continue
                if member.attempt is None:
                    member.outcome = put_back(member.job, now, not_begun)
                else:
                    member.outcome = end(member.attempt, error=error, text=text)
            self.write()
