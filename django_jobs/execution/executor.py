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
import inspect
import logging
import time
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import features, signals
from ..engines.rows import UNREADABLE
from ..exceptions import ConfigurationError, WorkerNotImportable
from ..features import Attempt
from ..models import JobState, error_entry
from ..models.progress import ProgressReporter
from ..outcome import Outcome
from ..registry import resolve_worker
from .attempts import (errors_of, failed, failure, format_error, outcome_of, put_back,
                       run_after, with_meta_updates)
from .interrupt import (CancelledAtDeadline, JobCancelled, JobInterrupted, JobTimeout,
                        NodeShutdown, Running)

logger = logging.getLogger("django_jobs.executor")

__all__ = ["execute", "failed", "put_back", "reset_connections"]


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
        return failed(job, f"The job's row could not be read: {'; '.join(unreadable)}",
                      None), None
    try:
        worker_class = resolve_worker(job.worker)
        pipeline = features.pipeline(worker_class)
    except (WorkerNotImportable, ConfigurationError) as exc:
        # A deploy may bring the worker, or fix its options: retry with backoff like any
        # failure.
        return failed(job, str(exc), None), None
    worker = worker_class()
    attempt = Attempt(job, worker)
    _send(signals.job_started, worker_class, job=job)
    try:
        try:
            outcome = _run(running, attempt, pipeline)
        except JobInterrupted as exc:
            kind = running.interrupted_by or type(exc)
            if issubclass(kind, NodeShutdown):  # not an outcome of the job: put it back
                outcome = put_back(attempt.job, timezone.now(),
                                   "Interrupted: the node shut down before the job finished.")
                run_after(attempt, outcome, pipeline)  # state None: features tidy up, no more
                _log_and_stop(attempt, outcome, started, worker_class)
                return outcome, None
            outcome = _interrupted(attempt, kind, running.timeout)
        except BaseException as exc:  # every way out of perform counts
            # perform or a feature failed: record it, retry or discard. SystemExit (a library
            # calling sys.exit(), argparse in a wrapped CLI), KeyboardInterrupt and
            # GeneratorExit from a job are failures of that job like any exception: counted,
            # never a reason to put the job back (only the node's own shutdown does that,
            # above), and never a way to stop the node.
            outcome = failure(attempt, exc, format_error(exc))
        outcome = run_after(attempt, outcome, pipeline)
    finally:
        if reset:
            reset_connections()
        if running.progress is not None:
            # The last progress reported is written before the outcome goes to the acker
            # (an ack that keeps the row's meta keeps it).
            running.progress.close()
            attempt.job.progress_reporter = None
    outcome = with_meta_updates(attempt, outcome)
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
            return outcome_of(attempt)
    job, worker = attempt.job, attempt.worker
    # Attached to the job perform receives (a hook may have replaced the fetched one).
    running.progress = job.progress_reporter = ProgressReporter(
        job, sender=type(worker), written=not running.detached)
    timeout = worker.timeout(job)
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
    return outcome_of(attempt)


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


def _interrupted(attempt: Attempt, kind: type[JobInterrupted], timeout) -> Outcome:
    job = attempt.job
    now = timezone.now()
    if issubclass(kind, JobCancelled):
        reason = (attempt.cancel_reason or "Cancelled at its deadline."
                  if issubclass(kind, CancelledAtDeadline) else "Cancelled while executing.")
        return Outcome(job.pk, JobState.CANCELLED, now, {
            "errors": [*errors_of(job, now), error_entry(job.attempt, now, reason)]}, job)
    exc = JobTimeout(f"{job.worker} timed out after {timeout} s")
    text = f"JobTimeout: {job.worker} ran longer than its timeout of {timeout} s"
    return failure(attempt, exc, text)


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
