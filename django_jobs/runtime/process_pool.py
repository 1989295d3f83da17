"""Jobs that can be killed: attempts of ``executor = "process"`` workers run in child processes.

A thread can only be stopped between two Python bytecodes: a job blocked in C (a long
``time.sleep``, a socket read without a timeout, a stuck C extension) outlives its timeout, a
cancel, or a forced deadline. A worker with ``executor = "process"`` has each attempt run in a
child process (:mod:`django_jobs.runtime.child`) from a bounded pool of the node; stopping such
an attempt kills its child, and the pool starts another.

* The pool holds at most ``size`` children, started on first use; an attempt waits for a free
  one (its slot in the queue's limit is taken meanwhile). A child is replaced after
  ``max_jobs`` attempts (as Celery's ``max_tasks_per_child``) or when it dies.
* The whole attempt runs in the child — job features, hooks, ``perform`` — and its outcome
  comes back as JSON (:mod:`django_jobs.runtime.wire`); the node writes it through the door.
* Killed for its timeout, the attempt is failed (``JobTimeout``); for a cancel or a forced
  deadline, cancelled; at the node's shutdown, put back. A child that dies on its own fails the
  attempt with its exit status.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

from django.utils import timezone

from ..conf import jobs_settings
from ..exceptions import WorkerNotImportable
from ..execution.attempts import errors_of
from ..execution.executor import failed, put_back
from ..execution.interrupt import (CancelledAtDeadline, JobCancelled, JobInterrupted, JobTimeout,
                                   NodeShutdown, Running, on_interrupt)
from ..models import JobState, error_entry
from ..outcome import Outcome
from ..registry import resolve_worker
from . import wire

logger = logging.getLogger("django_jobs.process_pool")

#: Seconds a new child may take to start Django before the attempt fails.
START_TIMEOUT = 60.0
_KINDS = {cls.reason: cls for cls in (JobTimeout, JobCancelled, CancelledAtDeadline)}


def process_pool_options() -> dict[str, int]:
    """``DJANGO_JOBS["PROCESS_POOL"]``: ``size`` (None: one per core) and ``max_jobs``."""
    options = {"size": None, "max_jobs": 100, **(jobs_settings.PROCESS_POOL or {})}
    size = options["size"]
    if size is None:
        try:
            size = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            size = os.cpu_count() or 1
    return {"size": max(1, int(size)), "max_jobs": int(options["max_jobs"])}


def runs_in_process(job) -> bool:
    """Whether ``job``'s worker asks for a process of its own (``executor = "process"``);
    a worker that cannot be imported runs in a thread, where its attempt fails."""
    try:
        return resolve_worker(job.worker).executor == "process"
    except WorkerNotImportable:
        return False


class Child:
    """One job process and the two pipes to it."""

    def __init__(self) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django_jobs.runtime.child", str(to_child_r),
             str(from_child_w)], env=env, stdin=subprocess.DEVNULL,
            pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self.jobs = 0
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict) -> None:
        os.write(self._to_child, wire.encode(message))

    def receive(self, timeout: float) -> dict | None:
        """The next message, or None if none came within ``timeout`` s. Raises EOFError when
        the child is gone."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._from_child, 65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return wire.decode(line)

    def kill(self) -> None:
        """SIGKILL (safe to call from another thread, and more than once)."""
        try:
            self.process.send_signal(signal.SIGKILL)
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process.poll() is None:
            self.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            logger.error("job process %d did not exit", self.pid)


class ProcessPool:
    """At most ``size`` job processes, each replaced after ``max_jobs`` attempts."""

    def __init__(self, size: int, max_jobs: int) -> None:
        self.size = size
        self.max_jobs = max_jobs
        self._idle: list[Child] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    def run(self, running: Running) -> Outcome:
        """Run ``running``'s attempt in a child; return its outcome. Never raises for what
        the job does; an interrupt of ``running`` (timeout, cancel, forced deadline, node
        shutdown) kills the child."""
        job = running.job
        child = self._acquire()
        if child is None:  # the pool is closing: the node is shutting down
            return put_back(job, timezone.now(), "Interrupted: the node shut down before the "
                                                 "job started.")
        healthy = False
        try:
            outcome, healthy = self._attempt(child, running)
            return outcome
        finally:
            self._release(child, healthy)

    def _attempt(self, child: Child, running: Running) -> tuple[Outcome, bool]:
        job = running.job
        try:
            child.send({"job": wire.job_message(job)})
            child.jobs += 1
            started = time.monotonic()
            message = None
            while message is None:  # until the attempt's run begins (its before steps ran)
                message = child.receive(1.0)
                if message is None and time.monotonic() - started > START_TIMEOUT:
                    child.kill()
                    return failed(job, f"The job process (pid {child.pid}) did not start "
                                       f"within {START_TIMEOUT:g} s."), False
            if "started" in message:
                info = message["started"]
                running.timeout = info["timeout"]
                if info["left"] is not None:
                    running.deadline = time.monotonic() + info["left"]
                    running.deadline_kind = _KINDS.get(info["kind"], JobTimeout)
                running.start()  # from here the node's watchdog and cancels may stop it
                try:
                    with on_interrupt(child.kill):
                        message = None
                        while message is None:
                            message = child.receive(1.0)
                finally:
                    running.finish()
            return wire.outcome_from_message(message["outcome"], job), True
        except (EOFError, OSError, JobInterrupted):
            child.kill()
            return self._killed(child, running), False

    @staticmethod
    def _killed(child: Child, running: Running) -> Outcome:
        """The outcome of an attempt whose child is gone."""
        job, kind = running.job, running.interrupted_by
        now = timezone.now()
        if kind is not None and issubclass(kind, NodeShutdown):
            return put_back(job, now, "Interrupted: the node shut down before the job "
                                      "finished.")
        if kind is not None and issubclass(kind, JobCancelled):
            reason = ("Cancelled at its deadline." if issubclass(kind, CancelledAtDeadline)
                      else "Cancelled while executing.")
            return Outcome(job.pk, JobState.CANCELLED, now, {"errors": [
                *errors_of(job, now),
                error_entry(job.attempt, now, f"{reason} (its job process was killed)")]}, job)
        if kind is not None:
            return failed(job, f"JobTimeout: {job.worker} ran longer than its timeout of "
                               f"{running.timeout} s (its job process was killed)")
        code = child.process.wait()
        how = f"signal {-code}" if code < 0 else f"status {code}"
        return failed(job, f"The job process (pid {child.pid}) died with {how} before the "
                           f"attempt ended.")

    def _acquire(self) -> Child | None:
        with self._cond:
            while not self._idle and self._count >= self.size and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return Child()
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, child: Child, healthy: bool) -> None:
        keep = healthy and child.jobs < self.max_jobs and child.process.poll() is None
        if not keep:
            child.close()
        with self._cond:
            if keep and not self._closed:
                self._idle.append(child)
            else:
                self._count -= 1
                if keep:
                    child.close()
            self._cond.notify()

    def close(self) -> None:
        """Stop every idle child; busy ones are stopped when their attempts end."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for child in idle:
            child.close()
