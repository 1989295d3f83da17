"""Leader plugins: periodic cluster-wide work that only the leader does.

The leader node sends :data:`django_jobs.signals.leader_tick` about twice a second while it
holds the lease; a plugin is a receiver of that signal that runs its work every ``interval``
seconds and reports it with :data:`~django_jobs.signals.plugin_ran`. The node knows no plugin
by name and holds none of their options: the built-in ones (stager, lifeline, pruner, cron)
are built from ``DJANGO_JOBS`` (:meth:`Plugin.from_settings`, which validates the options)
and connected when the app is ready, and a project connects its own the same way::

    class Reindex(Plugin):
        name = "reindex"
        interval = 60.0

        def run(self, node, engine, now):
            return {"reindexed": reindex_search()}

    Reindex().connect()   # in your AppConfig.ready()
"""

from __future__ import annotations

import datetime
import difflib
import threading
import time
import weakref
from collections.abc import Collection, Iterable
from typing import Any, NamedTuple

from .. import signals
from ..durations import to_seconds
from ..engines import Engine
from ..exceptions import ConfigurationError, InvalidJobError

_lock = threading.Lock()
_connected: dict[str, Plugin] = {}


class Problem(NamedTuple):
    """What is wrong with a plugin option: a message naming the option, and a hint."""

    msg: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.msg} {self.hint}" if self.hint else self.msg


class Plugin:
    """A periodic task of the leader. ``run`` returns counts for the ``plugin_ran`` signal."""

    #: Unique name (the signal's ``plugin`` argument, the runjobs banner, dispatch uid).
    name = ""
    #: Seconds between runs on the leading node.
    interval: float = 1.0

    @classmethod
    def from_settings(cls, **overrides: Any) -> Plugin | None:
        """The plugin as ``DJANGO_JOBS`` configures it, ``overrides`` (option: value) winning
        over the settings; None when the settings turn it off. Raises ConfigurationError
        naming every bad option (see :meth:`problems`)."""
        cls.check_options(**overrides)
        return cls()

    @classmethod
    def check_options(cls, **overrides: Any) -> None:
        """Raise ConfigurationError naming every problem :meth:`problems` finds."""
        problems = cls.problems(**overrides)
        if problems:
            raise ConfigurationError(" ".join(str(p) for p in problems))

    @classmethod
    def problems(cls, **overrides: Any) -> list[Problem]:
        """Everything wrong with this plugin's settings (the system checks report them)."""
        return []

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


# -- options: validation shared by the plugins ----------------------------------------------------


def unknown_options(where: str, given: Iterable[Any], known: Collection[str]) -> list[Problem]:
    """One problem per name in ``given`` that is not in ``known``, with the closest known name
    as a hint ("did you mean"), or the list of known ones."""
    problems = []
    known = [str(name) for name in known]  # plain strings, for the messages
    for name in given:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), list(known), n=1)
        problems.append(Problem(f"{where} has an unknown option {name!r}.",
                                f"Did you mean {close[0]!r}?" if close
                                else "Valid options: " + ", ".join(known) + "."))
    return problems


def seconds_option(where: str, value: Any, *, forever: bool = False,
                   minimum: float = 0.0) -> float:
    """``value`` as seconds (a number, a ``timedelta`` or ``(n, "days")``) greater than 0 and
    at least ``minimum``; with ``forever``, None or ``"infinity"`` return ``math.inf``.
    Raises ConfigurationError naming ``where``."""
    if isinstance(value, bool):
        value = str(value)  # refused below with the rest: True is not a duration
    try:
        seconds = to_seconds(value, where, allow_infinity=forever)
    except InvalidJobError as exc:
        raise ConfigurationError(f"{exc}.") from None
    if seconds <= 0 or seconds < minimum:
        floor = f"at least {minimum:g} seconds" if minimum else "more than 0 seconds"
        raise ConfigurationError(f"{where} must be {floor}, not {value!r}.")
    return seconds


def problem_of(check: Any, *args: Any, **kwargs: Any) -> Problem | None:
    """Run ``check``; the ConfigurationError it raises as a Problem (None when it passes)."""
    try:
        check(*args, **kwargs)
    except ConfigurationError as exc:
        return Problem(str(exc))
    return None


__all__ = ["Plugin", "Problem", "connected_plugins", "problem_of", "seconds_option",
           "unknown_options"]
