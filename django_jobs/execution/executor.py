"""Running one attempt of a job and deciding its outcome.

``execute(running)`` resolves the worker, calls ``perform`` (sync, or ``async def`` on an event
loop of its own), turns the result or exception into an :class:`Outcome` and sends the job
signals. It never raises for anything the job does: a bad worker path, an exception, a timeout
or a bad return value all become a recorded error.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import time
import traceback
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import signals
from ..build import resolve_worker
from ..exceptions import WorkerNotImportable
from ..models import JobState, error_entry
from ..worker import Cancel, Discard, Snooze, Worker
from .interrupt import JobCancelled, JobInterrupted, JobTimeout, NodeShutdown, Running
from .outcome import Outcome

logger = logging.getLogger("django_jobs.executor")


def execute(running: Running, *, reraise: bool = False,
            reset: bool = True) -> tuple[Outcome, Any]:
    """Run ``running.job`` once in this thread; return its outcome and perform's result.

    ``reraise`` re-raises an exception from ``perform`` after its outcome is decided (testing
    helpers); ``reset=False`` leaves this thread's database connections as they are (for a
    caller running inside its own transaction, such as a test).
    """
    job = running.job
    started = time.monotonic()
    result: Any = None
    try:
        worker_class = resolve_worker(job.worker)
    except WorkerNotImportable as exc:
        # A deploy may bring the worker: retry with backoff like any failure.
        return _failed(job, exc, str(exc), started, Worker()), None
    worker = worker_class()
    _send(signals.job_started, worker_class, job=job)
    try:
        timeout = worker.timeout(job)
        if timeout is not None:
            running.deadline = time.monotonic() + float(timeout)
        try:
            running.start()
            if inspect.iscoroutinefunction(worker.perform):
                result = _run_async(running, worker, timeout)
            else:
                result = worker.perform(job)
        finally:
            running.finish()
    except JobInterrupted as exc:
        interrupted = running.interrupted_by or type(exc)
        return _interrupted(job, interrupted, timeout, started, worker, worker_class), None
    except Exception as exc:  # the job failed: record it, retry or discard
        text = "".join(traceback.format_exception(exc))
        outcome = _failed(job, exc, text, started, worker)
        _send(signals.job_exception, worker_class, job=job, exception=exc, traceback=text,
              state=outcome.state, duration=time.monotonic() - started)
        _after_job(job, outcome, started, None, worker_class)
        if reraise:
            running.outcome = outcome
            raise
        return outcome, None
    finally:
        if reset:
            reset_connections()
    outcome = _from_result(job, result, started, worker)
    _after_job(job, outcome, started, result, worker_class)
    return outcome, result


def _run_async(running: Running, worker: Worker, timeout: float | None) -> Any:
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


def _from_result(job, result: Any, started: float, worker: Worker) -> Outcome:
    now = timezone.now()
    if isinstance(result, Snooze):
        meta = dict(job.meta)
        meta["snoozed"] = meta.get("snoozed", 0) + 1
        # A snooze is not a failure: give the attempt back by raising max_attempts (Oban).
        return Outcome(job.pk, JobState.SCHEDULED, now, {
            "scheduled_at": now + datetime.timedelta(seconds=result.seconds),
            "max_attempts": job.max_attempts + 1, "meta": meta})
    if isinstance(result, Cancel):
        return Outcome(job.pk, JobState.CANCELLED, now, {
            "cancelled_at": now,
            "errors": [*job.errors, _error(job, now, f"Cancelled: {result.reason}")]})
    if isinstance(result, Discard):
        return Outcome(job.pk, JobState.DISCARDED, now, {
            "discarded_at": now,
            "errors": [*job.errors, _error(job, now, f"Discarded: {result.reason}")]})
    return Outcome(job.pk, JobState.COMPLETED, now)


def _failed(job, exc: BaseException, text: str, started: float, worker: Worker) -> Outcome:
    now = timezone.now()
    errors = [*job.errors, _error(job, now, text)]
    if job.attempt >= job.max_attempts:
        return Outcome(job.pk, JobState.DISCARDED, now, {"discarded_at": now, "errors": errors})
    try:
        delay = float(worker.backoff(job))
    except Exception:
        logger.exception("backoff() of %s failed; using the default", job.worker)
        delay = Worker.backoff(worker, job)
    return Outcome(job.pk, JobState.RETRYABLE, now, {
        "scheduled_at": now + datetime.timedelta(seconds=max(0.0, delay)), "errors": errors})


def _interrupted(job, kind: type[JobInterrupted], timeout, started: float, worker: Worker,
                 worker_class: type) -> Outcome:
    now = timezone.now()
    if issubclass(kind, JobCancelled):
        outcome = Outcome(job.pk, JobState.CANCELLED, now, {
            "cancelled_at": now,
            "errors": [*job.errors, _error(job, now, "Cancelled while executing.")]})
    elif issubclass(kind, NodeShutdown):
        outcome = put_back(job, now, "Interrupted: the node shut down before the job finished.")
    else:
        exc = JobTimeout(f"{job.worker} timed out after {timeout} s")
        text = f"JobTimeout: {job.worker} ran longer than its timeout of {timeout} s"
        outcome = _failed(job, exc, text, started, worker)
        _send(signals.job_exception, worker_class, job=job, exception=exc, traceback=text,
              state=outcome.state, duration=time.monotonic() - started)
    _after_job(job, outcome, started, None, worker_class)
    return outcome


def put_back(job, now, reason: str) -> Outcome:
    """An attempt the node abandons: back to ``available``, the attempt not counted."""
    return Outcome(job.pk, JobState.AVAILABLE, now, {
        "attempt": max(0, job.attempt - 1),
        "errors": [*job.errors, _error(job, now, reason)]})


def _error(job, now, text: str) -> dict:
    return error_entry(job.attempt, now, text)


def _after_job(job, outcome: Outcome, started: float, result: Any, worker_class) -> None:
    duration = time.monotonic() - started
    queue_time = ((job.attempted_at - job.scheduled_at).total_seconds()
                  if job.attempted_at else 0.0)
    level = logging.INFO if outcome.state == JobState.COMPLETED else logging.WARNING
    if logger.isEnabledFor(level):
        logger.log(level, "job %s %s %s in %.1f ms (attempt %s/%s, queue %s)", job.pk,
                   job.worker, outcome.state, duration * 1000, job.attempt, job.max_attempts,
                   job.queue)
    _send(signals.job_stopped, worker_class, job=job, state=outcome.state, duration=duration,
          queue_time=queue_time, result=result)


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
