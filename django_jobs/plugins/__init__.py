"""Leader plugins: receivers of ``leader_tick`` doing the cluster's periodic work.

The built-in plugins are built from ``DJANGO_JOBS`` (each validates its own options, and the
system checks report what is wrong) and connected when the app is ready; they are built anew
when ``DJANGO_JOBS`` changes (``override_settings`` in tests). ``runjobs`` flags that override
a plugin option (``--rescue-after``) go through :func:`connect_builtin_plugins`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.signals import setting_changed

from ..conf import SETTING_NAME, jobs_settings
from ..exceptions import ConfigurationError
from .base import Plugin, Problem, connected_plugins
from .cron import Cron
from .lifeline import Lifeline
from .pruner import Pruner
from .stager import Stager

logger = logging.getLogger("django_jobs.plugins")

#: The plugins every cluster runs, connected when the app is ready.
BUILTIN: tuple[type[Plugin], ...] = (Stager, Lifeline, Pruner, Cron)

_lock = threading.Lock()
#: The overrides of the last connect_builtin_plugins() call; None before the first one.
_overrides: dict[str, dict[str, Any]] | None = None


def connect_builtin_plugins(**overrides: dict[str, Any]) -> list[Plugin]:
    """Build the built-in plugins from ``DJANGO_JOBS`` and connect them to ``leader_tick``,
    replacing the ones connected before; return them. ``overrides`` map a plugin's name to
    options that win over the settings (``lifeline={"rescue_after": 5}``).

    A plugin that its settings turn off (``"PRUNER": False``) is disconnected. One whose
    settings are invalid is left out too, and logged: the system checks (``manage.py check``,
    and every ``runjobs`` before it starts) report the problem itself.
    """
    global _overrides
    unknown = set(overrides) - {plugin.name for plugin in BUILTIN}
    if unknown:
        raise ConfigurationError(f"no built-in plugin named {', '.join(sorted(unknown))}")
    built = []
    with _lock:
        _overrides = dict(overrides)
        connected = {plugin.name: plugin for plugin in connected_plugins()}
        for plugin_class in BUILTIN:
            try:
                plugin = plugin_class.from_settings(**overrides.get(plugin_class.name, {}))
            except ConfigurationError as exc:
                logger.error("plugin %s is not running: %s", plugin_class.name, exc)
                plugin = None
            if plugin is None:
                old = connected.get(plugin_class.name)
                if isinstance(old, plugin_class):  # a project's own plugin of that name stays
                    old.disconnect()
                continue
            built.append(plugin.connect())
    return built


def builtin_problems() -> dict[str, list[Problem]]:
    """What is wrong with the settings of each built-in plugin (by plugin name)."""
    return {plugin.name: plugin.problems() for plugin in BUILTIN}


def _reconnect(*, setting: str, **kwargs: Any) -> None:
    """Settings changed: build the built-in plugins anew (once the app has connected them)."""
    if setting == SETTING_NAME and _overrides is not None:
        jobs_settings.reload()  # whichever receiver runs first
        connect_builtin_plugins(**_overrides)


setting_changed.connect(_reconnect, dispatch_uid="django_jobs.plugins.reconnect")

__all__ = ["BUILTIN", "Cron", "Lifeline", "Plugin", "Problem", "Pruner", "Stager",
           "builtin_problems", "connect_builtin_plugins", "connected_plugins"]
