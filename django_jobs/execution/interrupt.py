"""Stopping a running job from outside: timeouts, cancels and shutdown.

Sync jobs run in pool threads. To stop one, the watcher raises an exception *in that thread*
(``PyThreadState_SetAsyncExc``): it is delivered between two Python bytecodes, so Python code
stops wherever it is, loops included, and ``except Exception`` in the job cannot swallow it
(the exceptions derive from ``BaseException``). A call blocked inside C (``time.sleep``, a
socket read without a timeout) is stopped when that call returns. Async jobs are stopped by
cancelling their task, which interrupts any ``await`` at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading


class JobInterrupted(BaseException):
    """A running job was stopped from outside."""

    reason = "interrupted"


class JobTimeout(JobInterrupted):
    """The job ran past its ``timeout``."""

    reason = "timeout"


class JobCancelled(JobInterrupted):
    """The job was cancelled while executing."""

    reason = "cancelled"


class CancelledAtDeadline(JobCancelled):
    """A job feature's cancel time passed while the job ran (``Attempt.cancel_when``)."""

    reason = "deadline"


class NodeShutdown(JobInterrupted):
    """The node stopped before the job finished (after the grace period)."""

    reason = "shutdown"


class Running:
    """A job being executed: where it runs, and a lock that makes interrupting it safe.

    ``interrupt`` only acts while the attempt is ``active``; the executor clears ``active``
    (and any exception still pending for its thread) under the same lock when ``perform``
    returns, so an interrupt never lands in the next job of the same thread.
    """

    def __init__(self, job) -> None:
        self.job = job
        self.lock = threading.Lock()
        self.active = False
        self.thread_id: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.interrupted_by: type[JobInterrupted] | None = None
        #: ``time.monotonic()`` instant at which the watchdog interrupts the attempt with
        #: ``deadline_kind`` (the worker's timeout, or a feature's cancel time).
        self.deadline: float | None = None
        self.deadline_kind: type[JobInterrupted] = JobTimeout
        #: The worker's timeout for this attempt, in seconds.
        self.timeout: float | None = None
        #: The attempt's outcome, set before the executor re-raises (testing helpers).
        self.outcome = None

    def start(self) -> None:
        with self.lock:
            self.thread_id = threading.get_ident()
            self.active = True

    def finish(self) -> None:
        with self.lock:
            if self.active and self.thread_id is not None and self.loop is None:
                # Drop an exception injected but not yet delivered.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           None)
            self.active = False

    def interrupt(self, exc_type: type[JobInterrupted]) -> bool:
        """Stop the attempt with ``exc_type``; False if it is no longer running."""
        with self.lock:
            if not self.active or self.interrupted_by is not None:
                return False
            self.interrupted_by = exc_type
            if self.loop is not None and self.task is not None:
                self.loop.call_soon_threadsafe(self.task.cancel)
            elif self.thread_id is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           ctypes.py_object(exc_type))
            return True
