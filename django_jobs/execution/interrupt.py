"""Stopping a running job from outside: timeouts, cancels and shutdown.

Sync jobs run in pool threads. To stop one, the watcher raises an exception *in that thread*
(``PyThreadState_SetAsyncExc``): it is delivered between two Python bytecodes, so Python code
stops wherever it is, loops included, and ``except Exception`` in the job cannot swallow it
(the exceptions derive from ``BaseException``). A call blocked inside C (``time.sleep``, a
socket read without a timeout) is stopped when that call returns. Async jobs are stopped by
cancelling their task, which interrupts any ``await`` at once.

Work that must not be cut in half (claiming rows and remembering them, writing outcomes and
knowing they are written) runs :func:`shielded`: an interrupt arriving meanwhile is delivered
when the block ends. A wait that an interrupt should cut short registers a callback with
:func:`on_interrupt`.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: The attempt running in this thread (sync jobs), for :func:`shielded` and
#: :func:`on_interrupt`.
_local = threading.local()


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

    def __init__(self, job, *, detached: bool = False) -> None:
        self.job = job
        #: The attempt runs apart from the database (inline mode, ``perform_job``): its
        #: outcome is not written, the job may not even be a row, and work inside it must not
        #: reach for other rows (a chunk runs alone). False for ``runjobs`` and
        #: ``drain_queue``, whose outcomes are written.
        self.detached = detached
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
        #: Writes the progress the job reports (``Job.report_progress``); the node's heartbeat
        #: writes a throttled value through it.
        self.progress = None
        #: Depth of :func:`shielded` blocks; an interrupt meanwhile waits in ``deferred``.
        self.shields = 0
        self.deferred = False
        #: Called (under the lock) when the attempt is interrupted (:func:`on_interrupt`).
        self.wakers: list[Callable[[], None]] = []

    def start(self) -> None:
        with self.lock:
            self.thread_id = threading.get_ident()
            self.active = True
        _local.running = self

    def finish(self) -> None:
        with self.lock:
            if self.active and self.thread_id is not None and self.loop is None:
                # Drop an exception injected but not yet delivered.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           None)
            self.active = False
            self.deferred = False
        if getattr(_local, "running", None) is self:
            _local.running = None

    def interrupt(self, exc_type: type[JobInterrupted]) -> bool:
        """Stop the attempt with ``exc_type``; False if it is no longer running."""
        with self.lock:
            if not self.active or self.interrupted_by is not None:
                return False
            self.interrupted_by = exc_type
            for wake in self.wakers:
                wake()
            if self.loop is not None and self.task is not None:
                self.loop.call_soon_threadsafe(self.task.cancel)
            elif self.shields:
                self.deferred = True  # delivered when the shielded block ends
            elif self.thread_id is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           ctypes.py_object(exc_type))
            return True


def current_running() -> Running | None:
    """The sync attempt running in this thread, if any."""
    return getattr(_local, "running", None)


@contextmanager
def shielded() -> Iterator[None]:
    """Run the block whole: an interrupt of this thread's attempt that arrives meanwhile is
    raised when the block ends (at once if the block raised nothing else). Outside an attempt
    (inline mode, ``perform_job``...) it does nothing."""
    running = current_running()
    if running is None:
        yield
        return
    with running.lock:
        running.shields += 1
    try:
        yield
    finally:
        with running.lock:
            running.shields -= 1
            deliver = running.deferred and not running.shields
            if deliver:
                running.deferred = False
        if deliver:
            raise running.interrupted_by()


@contextmanager
def on_interrupt(wake: Callable[[], None]) -> Iterator[None]:
    """Call ``wake`` if this thread's attempt is interrupted during the block (to cut a wait
    short: an exception injected into a thread blocked in C lands only when the call
    returns). ``wake`` runs in the interrupting thread and must not block."""
    running = current_running()
    if running is None:
        yield
        return
    with running.lock:
        running.wakers.append(wake)
        if running.interrupted_by is not None:
            wake()
    try:
        yield
    finally:
        with running.lock:
            running.wakers.remove(wake)
