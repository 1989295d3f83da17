"""Bounded waits for the contract's threads: every wait has a deadline, and a stuck test fails
with a message naming what it waited for instead of hanging the run.

The timeouts catch hangs; they are not what a test checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections

#: Default deadline of a wait, in seconds: far beyond what anything takes on an idle machine.
TIMEOUT = 10.0


def timed_out(timeout: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def wait_event(event: threading.Event, timeout: float = TIMEOUT, *, what: str) -> None:
    """``event.wait(timeout)`` that fails, naming ``what``, when the event is not set in time."""
    if not event.wait(timeout):
        raise timed_out(timeout, what)


def join_all(threads: Iterable[threading.Thread], timeout: float = TIMEOUT, *,
             what: str = "threads") -> None:
    """Join ``threads`` within one shared deadline; fail naming the ones still running (a
    thread cannot be killed: the contract's threads are daemons)."""
    threads = list(threads)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what} to finish; "
                             f"still running: {', '.join(stuck)}")


def in_thread(target: Callable[[], Any], *, name: str = "contract-thread") -> threading.Thread:
    """Start ``target()`` in a daemon thread that closes its database connections at the end;
    join it with :func:`join_all`."""

    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def race(count: int, target: Callable[[int], Any], *, timeout: float = 60.0,
         what: str = "racing threads") -> list:
    """Run ``target(i)`` for each i < ``count`` in its own daemon thread, all released together
    by a barrier; return the results in order.

    Each thread closes its database connections when done. The first exception raised in a
    thread is re-raised here (the cause before its echo, a broken barrier, in the others);
    threads still running after ``timeout`` s fail the test.
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
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
