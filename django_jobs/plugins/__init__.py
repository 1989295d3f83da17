"""Leader plugins: receivers of ``leader_tick`` doing the cluster's periodic work."""

from .base import Plugin, connected_plugins
from .cron import Cron
from .lifeline import Lifeline
from .pruner import Pruner
from .stager import Stager

#: The plugins every cluster runs, connected when the app is ready.
BUILTIN = (Stager, Lifeline, Pruner, Cron)


def connect_builtin_plugins() -> None:
    """Connect the built-in plugins to ``leader_tick`` (once; a later call changes nothing)."""
    names = {plugin.name for plugin in connected_plugins()}
    for plugin_class in BUILTIN:
        if plugin_class.name not in names:
            plugin_class().connect()


__all__ = ["BUILTIN", "Cron", "Lifeline", "Plugin", "Pruner", "Stager", "connect_builtin_plugins",
           "connected_plugins"]
