"""Watching what an engine and the door send: ``state_changed`` signals, LISTEN/NOTIFY
payloads, and this process's producer wake-ups."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

from django.db import DEFAULT_DB_ALIAS, connections

from .. import features, signals
from ..engines import Engine, wakeup
from ..pro import FEATURES
from .waits import TIMEOUT

try:  # The channels the runtime's notifier LISTENs on; psycopg is optional.
    from ..engines.postgresql import CONTROL_CHANNEL, INSERT_CHANNEL
except ImportError:  # no psycopg: no engine here has LISTEN/NOTIFY
    CONTROL_CHANNEL = INSERT_CHANNEL = ""


class Refused(Exception):
    """Raised by a receiver that refuses a change (or a block that must roll back)."""


# -- the state_changed signal -------------------------------------------------------------------


def receive_changes(test, action=None, *, attempts: bool = False) -> list[SimpleNamespace]:
    """Connect a ``state_changed`` receiver for the rest of ``test``; return the list of the
    signals it got (``sender``, ``changes``, ``using``, and whether the connection was inside
    a transaction). ``action(changes)`` runs inside the receiver. The changes' ``attempt`` is
    kept only with ``attempts`` (AttemptReportTests checks it)."""
    calls = []

    def receiver(sender, changes, using, **kwargs):
        kept = list(changes) if attempts else [replace(c, attempt=None, old_attempt=None)
                                               for c in changes]
        calls.append(SimpleNamespace(sender=sender, changes=kept, using=using,
                                     atomic=connections[using].in_atomic_block))
        if action is not None:
            action(changes)

    signals.state_changed.connect(receiver, weak=False)
    test.addCleanup(signals.state_changed.disconnect, receiver)
    return calls


@contextmanager
def no_receivers() -> Iterator[None]:
    """Nobody watching state changes for the block: ``state_changed`` receivers a project
    connected, and job features implementing ``acked`` (the built-in chains), are set aside.
    The door's fast paths then read nothing back."""
    signal = signals.state_changed
    watching = [f for f in features.registered_features()
                if type(f).acked is not features.Feature.acked]
    with signal.lock:
        saved, signal.receivers = signal.receivers, []
        signal.sender_receivers_cache.clear()
    for feature in watching:
        features.unregister_feature(feature)
    try:
        yield
    finally:
        with signal.lock:
            signal.receivers = saved
            signal.sender_receivers_cache.clear()
        everything = [*features.registered_features()]
        for feature in everything:
            features.unregister_feature(feature)
        for feature in sorted([*everything, *watching], key=_registration_order):
            features.register_feature(feature)


def _registration_order(feature) -> int:
    """Where a feature stood among the built-in ones (others after them)."""
    builtin = [type(f) for f in FEATURES]
    return builtin.index(type(feature)) if type(feature) in builtin else len(builtin)


# -- hearing notifications ----------------------------------------------------------------------


class Listener:
    """A connection of its own LISTENing on ``channel`` (engines with LISTEN/NOTIFY), as a
    node's notifier does."""

    def __init__(self, channel: str, alias: str = DEFAULT_DB_ALIAS) -> None:
        wrapper = connections[alias]
        self.channel = channel
        self.conn = wrapper.get_new_connection(wrapper.get_connection_params())
        self.conn.autocommit = True
        self.conn.execute(f"LISTEN {channel}")

    def heard(self) -> list[str]:
        """The payloads delivered since the last call, in order.

        The listener sends a notification of its own and reads up to it: the server delivers
        notifications in commit order, so everything committed before has arrived by then
        (no sleep, no guessing how long a notification takes)."""
        marker = f"marker-{uuid.uuid4().hex}"
        self.conn.execute("SELECT pg_notify(%s, %s)", [self.channel, marker])
        payloads = []
        for notify in self.conn.notifies(timeout=TIMEOUT):
            if notify.payload == marker:
                return payloads
            payloads.append(notify.payload)
        raise AssertionError(f"timed out after {TIMEOUT:g} s waiting for the listener's own "
                             f"notification on {self.channel}; heard {payloads}")

    def close(self) -> None:
        self.conn.close()


class Producers:
    """What producers of ``queues`` hear about new jobs: on another connection (LISTEN) where
    the engine has LISTEN/NOTIFY, else through this process's wake-up registry
    (:mod:`django_jobs.engines.wakeup`), where the producers running here register."""

    def __init__(self, test, engine: Engine, queues) -> None:
        self.listener = None
        self.woken: list[str] = []
        if engine.has_listen_notify:
            self.listener = Listener(INSERT_CHANNEL, engine.alias)
            test.addCleanup(self.listener.close)
        else:
            for queue in queues:
                wake = partial(self.woken.append, queue)
                wakeup.register(queue, wake)
                test.addCleanup(wakeup.unregister, queue, wake)

    def heard(self) -> list[str]:
        """The queues woken since the last call, sorted."""
        if self.listener is not None:
            return sorted(self.listener.heard())
        heard, self.woken[:] = sorted(self.woken), []
        return heard
