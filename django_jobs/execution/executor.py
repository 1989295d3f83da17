"""Running one attempt of a job and deciding its outcome.

``execute(running)`` is the run moment of a job's life, the same for ``runjobs``, inline mode,
``perform_job`` and ``drain_queue``: resolve the worker; send ``job_started``; run the
worker's job features' ``before`` steps (database side first), then ``perform`` (sync, or
``async def`` on an event loop of its own), unless a feature short-circuited it; turn the
result or exception into an :class:`Outcome`; run the features' ``after`` steps (``perform``'s
side first); send ``job_exception`` / ``job_stopped``. It never raises for anything the job
does: a bad worker path, an exception, a timeout or a bad return value all become a recorded
error.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import random
import time
import traceback
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import features, signals
from ..engines.rows import UNREADABLE
from ..exceptions import WorkerNotImportable
from ..features import Attempt
from ..models import JobState, error_entry
from ..models.progress import ProgressReporter
from ..registry import resolve_worker
from ..results import Cancel, Discard, Snooze
from .interrupt import (CancelledAtDeadline, JobCancelled, JobInterrupted, JobTimeout,
                        NodeShutdown, Running)
from ..outcome import Outcome

logger = logging.getLogger("django_jobs.executor")

#: The state an attempt ended in, as features and hooks name it, by the job's new state.
ATTEMPT_STATE = {
    JobState.COMPLETED: "complete",
    JobState.SCHEDULED: "snooze",
    JobState.CANCELLED: "cancel",
    JobState.DISCARDED: "discard",
    JobState.RETRYABLE: "error",
}


def default_backoff(attempt: int) -> float:
    """Oban's default backoff after the ``attempt``-th failure: ``15 + 2 ** attempt`` seconds,
    plus up to 10 % random jitter so that jobs failing together do not retry together."""
    base = 15 + 2 ** min(attempt, 20)
    return base + random.uniform(0, base * 0.1)


def execute(running: Running, *, reraise: bool = False,
            reset: bool = True) -> tuple[Outcome, Any]:
    """Run ``running.job`` once in this thread; return its outcome and perform's result.

    ``reraise`` re-raises an exception from ``perform`` (or a feature) after its outcome is
    decided and the ``after`` steps ran (testing helpers); ``reset=False`` leaves this thread's
    database connections as they are (for a caller inside its own transaction, such as a test).
    """
    job = running.job
    started = time.monotonic()
    unreadable = getattr(job, UNREADABLE, None)
    if unreadable:  # a row no API writes: its attempt fails, naming what could not be read
        return _failed(job, f"The job's row could not be read: {'; '.join(unreadable)}",
                       None), None
    try:
        worker_class = resolve_worker(job.worker)
    except WorkerNotImportable as exc:
        # A deploy may bring the worker: retry with backoff like any failure.
        return _failed(job, str(exc), None), None
    worker = worker_class()
    attempt = Attempt(job, worker)
    pipeline = features.pipeline(worker_class)
    _send(signals.job_started, worker_class, job=job)
    try:
        try:
            outcome = _run(running, attempt, pipeline)
        except JobInterrupted as exc:
            kind = running.interrupted_by or type(exc)
            if issubclass(kind, NodeShutdown):  # not an outcome of the job: put it back
                outcome = put_back(attempt.job, timezone.now(),
                                   "Interrupted: the node shut down before the job finished.")
                _after(attempt, outcome, pipeline)  # state None: features tidy up, no more
                _log_and_stop(attempt, outcome, started, worker_class)
                return outcome, None
            outcome = _interrupted(attempt, kind, running.timeout)
        except BaseException as exc:  # every way out of perform counts
            # perform or a feature failed: record it, retry or discard. SystemExit (a library
            # calling sys.exit(), argparse in a wrapped CLI), KeyboardInterrupt and
            # GeneratorExit from a job are failures of that job like any exception: counted,
            # never a reason to put the job back (only the node's own shutdown does that,
            # above), and never a way to stop the node.
            outcome = _error(attempt, exc, "".join(traceback.format_exception(exc)))
        outcome = _after(attempt, outcome, pipeline)
    finally:
        if reset:
            reset_connections()
        if running.progress is not None:
            # The last progress reported is written before the outcome goes to the acker
            # (an ack that keeps the row's meta keeps it).
            running.progress.close()
            attempt.job.progress_reporter = None
    _write_meta_updates(attempt, outcome)
    if attempt.error is not None:
        _send(signals.job_exception, worker_class, job=attempt.job, exception=attempt.error,
              traceback=attempt.traceback, state=outcome.state,
              duration=time.monotonic() - started)
    _log_and_stop(attempt, outcome, started, worker_class)
    if reraise and isinstance(attempt.error, Exception):  # from perform or a feature
        running.outcome = outcome
        raise attempt.error
    return outcome, attempt.result


def _run(running: Running, attempt: Attempt, pipeline: features.Pipeline) -> Outcome:
    """The features' ``before`` steps, then ``perform`` unless one short-circuited it."""
    for feature, config in pipeline:
        result = feature.before(attempt, config)
        if result is not None:
            attempt.result = result
            return _from_result(attempt)
    job, worker = attempt.job, attempt.worker
    # Attached to the job perform receives (a hook may have replaced the fetched one).
    running.progress = job.progress_reporter = ProgressReporter(
        job, sender=type(worker), written=running.written)
    # Only a ``timeout`` method limits the run: a family of workers may use the name for a
    # plain option of its own (chunk workers: how long a chunk gathers).
    timeout = worker.timeout(job) if callable(worker.timeout) else None
    running.timeout = timeout
    if timeout is not None:
        running.deadline = time.monotonic() + float(timeout)
    if attempt.cancel_at is not None and (running.deadline is None
                                          or attempt.cancel_at < running.deadline):
        # A feature's deadline comes first: the watchdog cancels instead of timing out.
        running.deadline, running.deadline_kind = attempt.cancel_at, CancelledAtDeadline
    try:
        running.start()
        if inspect.iscoroutinefunction(worker.perform):
            attempt.result = _run_async(running, worker, timeout)
        else:
            attempt.result = worker.perform(job)
    finally:
        running.finish()
    return _from_result(attempt)


def _run_async(running: Running, worker, timeout: float | None) -> Any:
    loop = asyncio.new_event_loop()
    try:
        running.loop = loop
        coro = worker.perform(running.job)
        task = loop.create_task(asyncio.wait_for(coro, timeout) if timeout else coro)
        running.task = task
        try:
            return loop.run_until_complete(task)
        except TimeoutError:
            raise JobTimeout() from None
        except asyncio.CancelledError:
            raise (running.interrupted_by or JobCancelled)() from None
    finally:
        running.loop = None
        running.task = None
        loop.close()


def _after(attempt: Attempt, outcome: Outcome, pipeline: features.Pipeline) -> Outcome:
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
            outcome = _error(attempt, exc, "".join(traceback.format_exception(exc)))
            attempt.state = ATTEMPT_STATE.get(outcome.state)
    return outcome


def _from_result(attempt: Attempt) -> Outcome:
    job, result = attempt.job, attempt.result
    now = timezone.now()
    if isinstance(result, Snooze):
        meta = dict(job.meta)
        meta["snoozed"] = meta.get("snoozed", 0) + 1
        # A snooze is not a failure: give the attempt back by raising max_attempts (Oban).
        return Outcome(job.pk, JobState.SCHEDULED, now, {
            "scheduled_at": now + datetime.timedelta(seconds=result.seconds),
            "max_attempts": job.max_attempts + 1, "meta": meta}, job)
    if isinstance(result, Cancel):
        return Outcome(job.pk, JobState.CANCELLED, now, {
            "errors": [*job.errors, _entry(job, now, f"Cancelled: {result.reason}")]}, job)
    if isinstance(result, Discard):
        return Outcome(job.pk, JobState.DISCARDED, now, {
            "errors": [*job.errors, _entry(job, now, f"Discarded: {result.reason}")]}, job)
    return Outcome(job.pk, JobState.COMPLETED, now, job=job)


def _error(attempt: Attempt, exc: BaseException, text: str) -> Outcome:
    """The outcome of a failed attempt, remembered on ``attempt`` for ``job_exception``."""
    attempt.error = exc
    attempt.traceback = text
    return _failed(attempt.job, text, attempt.worker)


def _failed(job, text: str, worker) -> Outcome:
    """Retryable with the worker's backoff, or discarded when out of attempts."""
    now = timezone.now()
    errors = [*job.errors, _entry(job, now, text)]
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


def _interrupted(attempt: Attempt, kind: type[JobInterrupted], timeout) -> Outcome:
    job = attempt.job
    now = timezone.now()
    if issubclass(kind, JobCancelled):
        reason = (attempt.cancel_reason or "Cancelled at its deadline."
                  if issubclass(kind, CancelledAtDeadline) else "Cancelled while executing.")
        return Outcome(job.pk, JobState.CANCELLED, now, {
            "errors": [*job.errors, _entry(job, now, reason)]}, job)
    exc = JobTimeout(f"{job.worker} timed out after {timeout} s")
    text = f"JobTimeout: {job.worker} ran longer than its timeout of {timeout} s"
    return _error(attempt, exc, text)


def _write_meta_updates(attempt: Attempt, outcome: Outcome) -> None:
    if attempt.meta_updates and outcome.state != JobState.AVAILABLE:
        meta = outcome.changes.get("meta", attempt.job.meta)
        outcome.changes["meta"] = {**meta, **attempt.meta_updates}


# -- attempts of jobs run together ----------------------------------------------------------
# Work that runs several jobs in one call (a chunk's ``process``) gives each of them an attempt
# of its own with these three functions, so every job feature sees every job the way it sees
# one run by ``execute``: ``before`` steps (decrypt, cast args, check a deadline...) ahead of
# the work, ``after`` steps and meta updates once its outcome is known.

def begin_attempt(job, worker) -> tuple[Attempt, Outcome | None]:
    """Run the ``before`` steps of ``job``'s attempt by the ``worker`` instance. Returns the
    attempt, and its outcome when a feature short-circuited the work or failed (its ``after``
    steps have run then: the attempt is over); None when the job is ready for the work."""
    attempt = Attempt(job, worker)
    try:
        for feature, config in features.pipeline(type(worker)):
            result = feature.before(attempt, config)
            if result is not None:
                return attempt, end_attempt(attempt, result)
    except Exception as exc:
        return attempt, end_attempt(attempt, error=exc)
    return attempt, None


def end_attempt(attempt: Attempt, result: Any = None, *, error: BaseException | None = None,
                text: str | None = None) -> Outcome:
    """The outcome of an attempt that ended with ``result`` (None or a value: completed;
    ``Snooze``, ``Cancel``, ``Discard``) or with ``error`` (``text``, its traceback or reason,
    is what is recorded; by default the formatted exception): retryable with the worker's
    backoff, or discarded when out of attempts. The ``after`` steps run, and meta updates are
    added to what is written."""
    if error is not None:
        outcome = _error(attempt, error, text or "".join(traceback.format_exception(error)))
    else:
        attempt.result = result
        outcome = _from_result(attempt)
    outcome = _after(attempt, outcome, features.pipeline(type(attempt.worker)))
    _write_meta_updates(attempt, outcome)
    return outcome


def abandon_attempt(attempt: Attempt, reason: str) -> Outcome:
    """The outcome of an attempt given up before its work finished: back to ``available``,
    not counted (:func:`put_back`); the ``after`` steps run with state None to tidy up."""
    outcome = put_back(attempt.job, timezone.now(), reason)
    return _after(attempt, outcome, features.pipeline(type(attempt.worker)))


def failed(job, reason: str) -> Outcome:
    """A failed attempt that no worker decided (the run itself broke): counted, retried with
    the default backoff, or discarded when out of attempts; ``reason`` is recorded."""
    return _failed(job, reason, None)


def put_back(job, now, reason: str) -> Outcome:
    """An attempt the node abandons: back to ``available``, the attempt not counted."""
    return Outcome(job.pk, JobState.AVAILABLE, now, {
        "attempt": max(0, job.attempt - 1),
        "errors": [*job.errors, _entry(job, now, reason)]}, job)


def _entry(job, now, text: str) -> dict:
    return error_entry(job.attempt, now, text)


def _log_and_stop(attempt: Attempt, outcome: Outcome, started: float, worker_class) -> None:
    job = attempt.job
    duration = time.monotonic() - started
    queue_time = ((job.attempted_at - job.scheduled_at).total_seconds()
                  if job.attempted_at else 0.0)
    level = logging.INFO if outcome.state == JobState.COMPLETED else logging.WARNING
    if job.pk is not None and logger.isEnabledFor(level):  # jobs of the database, not inline
        logger.log(level, "job %s %s %s in %.1f ms (attempt %s/%s, queue %s)", job.pk,
                   job.worker, outcome.state, duration * 1000, job.attempt, job.max_attempts,
                   job.queue)
    _send(signals.job_stopped, worker_class, job=job, state=outcome.state, duration=duration,
          queue_time=queue_time, result=attempt.result)


def _send(signal, sender, **kwargs) -> None:
    if not signal.receivers:
        return
    for receiver, response in signal.send_robust(sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver %r failed: %r", receiver, response)


def reset_connections() -> None:
    """Leave this thread's database connections clean for the next job.

    Connections stay open between jobs (reconnecting per job would dominate short jobs), except
    one the job left inside a transaction, one that saw errors and no longer answers, or one
    older than ``CONN_MAX_AGE`` when that is set above zero.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        max_age = connection.settings_dict.get("CONN_MAX_AGE") or 0
        if connection.in_atomic_block or not connection.get_autocommit():
            logger.warning("a job left a transaction open on %r; rolled back and closed",
                           connection.alias)
            # Forget the abandoned atomic blocks first: close() keeps a connection it believes
            # is inside a transaction, and the next job would find it closed.
            connection.in_atomic_block = False
            connection.atomic_blocks = []
            connection.savepoint_ids = []
            connection.needs_rollback = False
            connection.closed_in_transaction = False
            connection.close()
        elif connection.errors_occurred and not connection.is_usable():
            connection.close()
        elif max_age and connection.close_at and time.monotonic() >= connection.close_at:
            connection.close()
        else:
            connection.errors_occurred = False
