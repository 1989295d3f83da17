"""LISTEN for announcements on PostgreSQL: inserted jobs, and queue/job control.

A dedicated connection (Django's settings, autocommit) listens on the insert channel (payload:
a queue name) and the control channel (payload: JSON). When the connection drops it is
re-opened with backoff; producers keep polling meanwhile, so nothing is missed for long.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable

from django.db import connections

from ..engines.postgresql import CONTROL_CHANNEL, INSERT_CHANNEL  # only used on PostgreSQL
from .retry import Retry

logger = logging.getLogger("django_jobs.notifier")


class Notifier:
    def __init__(self, alias: str, on_insert: Callable[[str], None],
                 on_control: Callable[[dict], None]) -> None:
        self.alias = alias
        self.on_insert = on_insert
        self.on_control = on_control
        self._stopping = threading.Event()
        self._conn = None
        self._thread = threading.Thread(target=self._run, name="django_jobs-notifier",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _connect(self):
        wrapper = connections[self.alias]
        conn = wrapper.get_new_connection(wrapper.get_connection_params())
        conn.autocommit = True
        conn.execute(f"LISTEN {INSERT_CHANNEL}")
        conn.execute(f"LISTEN {CONTROL_CHANNEL}")
        return conn

    def _run(self) -> None:
        # The listening connection is this notifier's own (not Django's): a failure closes it.
        retry = Retry(logger, close=self._close, stop=self._stopping)
        while not self._stopping.is_set():
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    retry.succeeded()
                for notify in self._conn.notifies(timeout=1.0):
                    self._dispatch(notify.channel, notify.payload)
                    if self._stopping.is_set():
                        break
            except Exception as exc:
                if self._stopping.is_set():
                    break
                retry.failed(exc, "listening for notifications")
        self._close()

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            if channel == INSERT_CHANNEL:
                self.on_insert(payload)
            else:
                self.on_control(json.loads(payload))
        except Exception:
            logger.exception("handling a %s notification failed", channel)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def stop(self) -> None:
        """Stop listening at once: the thread waits on the connection's socket for up to a
        second, so shut that socket down (through a duplicate of its descriptor) to wake it."""
        self._stopping.set()
        conn = self._conn
        if conn is not None:
            try:
                with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError, AttributeError):
                pass  # already closed: the thread is on its way out
        self._thread.join(3)

