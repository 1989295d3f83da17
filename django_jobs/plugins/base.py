"""Leader plugins: periodic cluster-wide work that only the leader does.

The leader node sends :data:`django_jobs.signals.leader_tick` about twice a second while it
holds the lease; a plugin is a receiver of that signal that runs its work every ``interval``
seconds and reports it with :data:`~django_jobs.signals.plugin_ran`. The node knows no plugin
by name: the built-in ones (stager, lifeline, pruner, cron) are connected when the app is
ready, and a project connects its own the same way::

    class Reindex(Plugin):
        name = "reindex"
        interval = 60.0

        def run(self, node, engine, now):
            return {"reindexed": reindex_search()}

    Reindex().connect()   # in your AppConfig.ready()
"""

from __future__ import annotations

import datetime
import threading
import time
import weakref
from typing import Any

from .. import signals
from ..engines import Engine

_lock = threading.Lock()
_connected: dict[str, Plugin] = {}


class Plugin:
    """A periodic task of the leader. ``run`` returns counts for the ``plugin_ran`` signal."""

    #: Unique name (the signal's ``plugin`` argument, the runjobs banner, dispatch uid).
    name = ""
    #: Seconds between runs on the leading node.
    interval: float = 1.0

    def __init__(self) -> None:
        # Django names a failing receiver by its __qualname__ (send_robust's log line).
        self.__qualname__ = f"{type(self).__qualname__}[{self.name}]"
        #: When each node last ran this plugin (time.monotonic()), per node object.
        self._last_run: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def run(self, node: Any, engine: Engine, now: datetime.datetime) -> dict[str, Any]:
        """Do the work once, as ``node``'s leader; return counts (``plugin_ran``'s result)."""
        raise NotImplementedError

    def __call__(self, sender: Any, *, node: Any, engine: Engine, now: datetime.datetime,
                 **kwargs: Any) -> dict[str, Any] | None:
        """The ``leader_tick`` receiver: run when ``interval`` has passed on this node."""
        last = self._last_run.get(node)
        if last is not None and time.monotonic() - last < self.interval:
            return None
        started = time.monotonic()
        try:
            result = self.run(node, engine, now)
        finally:
            self._last_run[node] = time.monotonic()
        if signals.plugin_ran.receivers:
            signals.plugin_ran.send_robust(self, plugin=self.name, result=result,
                                           duration=time.monotonic() - started, node=node)
        return result

    def connect(self) -> Plugin:
        """Start receiving ``leader_tick`` (replacing a connected plugin of the same name)."""
        with _lock:
            old = _connected.pop(self.name, None)
            if old is not None:
                signals.leader_tick.disconnect(old, dispatch_uid=f"django_jobs.plugin.{old.name}")
            signals.leader_tick.connect(self, weak=False,
                                        dispatch_uid=f"django_jobs.plugin.{self.name}")
            _connected[self.name] = self
        return self

    def disconnect(self) -> None:
        with _lock:
            if _connected.get(self.name) is self:
                del _connected[self.name]
                signals.leader_tick.disconnect(self, dispatch_uid=f"django_jobs.plugin.{self.name}")


def connected_plugins() -> list[Plugin]:
    """The plugins receiving ``leader_tick``, in the order they were connected."""
    with _lock:
        return list(_connected.values())
