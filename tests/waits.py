"""Bounded waits for tests that start threads or processes.

Every wait here has a deadline: a stuck test fails with a message naming what it waited for
(and, with ``describe``, what it saw instead), e.g. ``timed out after 30 s waiting for 5000
jobs to complete; 4998 completed, 2 executing``, instead of hanging the suite.

The timeouts catch hangs; they are not what a test checks. Make them generous (a loaded CI
machine is slow) and assert on what happened, not on how long it took.
"""

from __future__ import annotations

import contextlib
import queue as queue_module
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Default deadline of a wait, in seconds: far beyond what anything takes on an idle machine.
TIMEOUT = 10.0


def _timed_out(timeout: float, what: str, describe: Callable[[], str] | None) -> AssertionError:
    message = f"timed out after {timeout:g} s waiting for {what}"
    if describe is not None:
        try:
            message += f"; {describe()}"
        except Exception as exc:  # the description must not hide the timeout
            message += f"; (describing the state failed: {exc!r})"
    return AssertionError(message)


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, *, what: str | None = None,
               describe: Callable[[], str] | None = None, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that.

    After ``timeout`` s raise ``AssertionError("timed out after T s waiting for WHAT; STATE")``
    where WHAT is ``what`` (default: the predicate's name) and STATE is ``describe()``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what or getattr(predicate, "__name__", repr(predicate)),
                             describe)
        time.sleep(interval)


def holds_for(predicate: Callable[[], Any], seconds: float, interval: float = 0.02) -> bool:
    """True if ``predicate`` stays true for all of ``seconds`` (for "X does not happen")."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


def wait_event(event: threading.Event, timeout: float = TIMEOUT, *, what: str,
               describe: Callable[[], str] | None = None) -> None:
    """``event.wait(timeout)`` that fails, naming ``what``, when the event is not set in time."""
    if not event.wait(timeout):
        raise _timed_out(timeout, what, describe)


def get_from(source: Any, timeout: float = TIMEOUT, *, what: str) -> Any:
    """``source.get(timeout=...)`` (a queue.Queue or multiprocessing queue) that fails with a
    message naming ``what`` instead of raising ``queue.Empty``."""
    try:
        return source.get(timeout=timeout)
    except queue_module.Empty:
        raise _timed_out(timeout, what, None) from None


def join_all(workers: Iterable[Any], timeout: float = TIMEOUT, *, what: str = "threads") -> None:
    """Join threads or ``multiprocessing`` processes within one shared deadline.

    Fails naming the ones still running; processes still running are killed first, so that
    none outlives the test. (A thread cannot be killed: make test threads daemons.)
    """
    workers = list(workers)
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    stuck = [worker for worker in workers if worker.is_alive()]
    for worker in stuck:
        if hasattr(worker, "kill"):
            worker.kill()
            worker.join(5)
    if stuck:
        names = ", ".join(getattr(worker, "name", repr(worker)) for worker in stuck)
        raise _timed_out(timeout, f"{what} to finish", lambda: f"still running: {names}")


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Fail the block (``AssertionError`` raised inside it) if it runs longer than ``seconds``.

    For blocking calls made in the test's own thread that take no timeout of their own
    (``call_command("runjobs")``, ``node.stop()``). Uses SIGALRM, so it works in the main
    thread only (where unittest runs tests); elsewhere the block runs unbounded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise _timed_out(seconds, what, None)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_in_threads(count: int, target: Callable[[int], Any], *, timeout: float = 60.0,
                   what: str = "threads", on_error: Callable[[], Any] | None = None) -> list:
    """Run ``target(i)`` for each i < ``count`` in its own (daemon) thread; return the results
    in order.

    Each thread closes its database connections when done. The first exception raised in a
    thread is re-raised here (an error other than ``threading.BrokenBarrierError`` first: the
    cause, not its echo in the other threads); ``on_error`` runs in the failing thread (say,
    ``barrier.abort`` so the others stop waiting). Threads still running after ``timeout`` s
    fail the test.
    """
    from django.db import connections

    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)
            if on_error is not None:
                on_error()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), name=f"{what}-{i}", daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    join_all(threads, timeout, what=what)
    if errors:
        errors.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))
        raise errors[0]
    return results


def race(count: int, target: Callable[..., Any], *, prepare: Callable[[int], Any] | None = None,
         timeout: float = 60.0, what: str = "racing threads") -> list:
    """Run ``target(i)`` in ``count`` threads released together by a barrier; return the
    results in order (see :func:`run_in_threads` for connections, errors and the deadline).

    With ``prepare``, each thread first computes ``prepare(i)`` and the barrier releases
    ``target(i, prepared)``, so that slow set-up does not spread the start times.
    """
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        prepared = prepare(index) if prepare is not None else None
        barrier.wait(timeout)
        return target(index) if prepare is None else target(index, prepared)

    return run_in_threads(count, run, timeout=timeout, what=what, on_error=barrier.abort)


# Started threads close their database connections at the end: the contract suite's helper.
from django_jobs.contract.waits import in_thread  # noqa: E402,F401 - re-exported
