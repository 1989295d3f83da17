"""Retry with backoff: what every runtime loop does when its database work fails.

The acker, the producers, the node's heartbeat and leadership loops and the notifier each
repeat one piece of work for ever; when it fails they all do the same thing, here, once::

    retry = Retry(logger, alias=engine.alias, is_busy=engine.is_busy)
    while running:
        try:
            do_the_work()
        except Exception as exc:
            retry.failed(exc, "writing 3 job outcomes")   # log, close, wait, double
            continue
        retry.succeeded()                                  # back to the first delay

A busy database (SQLite's "database is locked", a serialization failure: the engine says
which) is expected under load and logged at INFO without a traceback; anything else is logged
with its traceback. The connection is closed (a connection left in a failed transaction must
not serve the next attempt), and the loop waits ``delay`` seconds, which doubles after each
failure up to ``cap`` and starts again from ``first`` after a success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import connections

__all__ = ["Retry"]


class Retry:
    """The failure handling of one loop (see the module docstring). Not thread-safe: one per
    loop."""

    def __init__(self, logger: logging.Logger, *, alias: str | None = None,
                 is_busy: Callable[[BaseException], bool] | None = None,
                 close: Callable[[], None] | None = None, first: float = 0.1,
                 cap: float = 5.0, stop: threading.Event | None = None) -> None:
        """``alias``: the Django connection to close after a failure (or give ``close``);
        ``is_busy``: tells an expected, busy database from a real failure; ``stop``: an event
        that cuts the wait short when set (the loop is stopping)."""
        if close is None and alias is None:
            raise ValueError("Retry needs the alias of the connection to close, or close=")
        self.logger = logger
        self.is_busy = is_busy or (lambda exc: False)
        self.close = close or (lambda: connections[alias].close())
        self.first = first
        self.cap = cap
        self.stop = stop
        #: Seconds the next failure waits.
        self.delay = first

    def failed(self, exc: BaseException, doing: str) -> float:
        """Handle a failure of ``doing`` (said in the log line): log it, close the connection,
        wait, double the next wait. Returns the seconds waited."""
        delay = self.delay
        if self.is_busy(exc):
            self.logger.info("%s: database busy; trying again in %.1f s", doing, delay)
        else:
            self.logger.error("%s failed; retrying in %.1f s", doing, delay,
                              exc_info=(type(exc), exc, exc.__traceback__))
        try:
            self.close()
        except Exception:  # the connection is broken anyway: the next attempt opens one
            self.logger.debug("closing the connection after a failure failed", exc_info=True)
        return self.wait()

    def wait(self) -> float:
        """Wait the current delay (cut short when ``stop`` is set) and double the next one,
        up to ``cap``; for a loop that logged and closed itself. Returns the seconds waited."""
        delay = self.delay
        if self.stop is not None:
            self.stop.wait(delay)
        else:
            time.sleep(delay)
        self.delay = min(delay * 2, self.cap)
        return delay

    def succeeded(self) -> None:
        """The work succeeded: the next failure waits ``first`` again."""
        self.delay = self.first
