"""The ``by`` option of chains and chunks: which jobs belong together.

One syntax for both features::

    by = "worker"                                  # jobs of the same worker
    by = {"args": "account"}                       # the same value of an args key
    by = {"args": ["account", "region"]}           # ... of several keys
    by = {"meta": "tenant", "args": "kind"}        # keys of meta and of args
    by = ["worker", {"args": "account"}]           # several parts together

:func:`parse_by` validates it once, when a worker class is set up, into a tuple of parts:
``("worker",)``, ``("args", keys)`` and ``("meta", keys)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError

#: One part of a partition: ("worker",), or ("args" | "meta", (key, ...)).
Part = tuple

SOURCES = ("args", "meta")


def parse_by(value: Any, what: str) -> tuple[Part, ...]:
    """The parts of the ``by`` option ``value`` (see the module docstring), in order.
    ``what`` names the option in errors (``"chain by"``, ``"chunk by"``). Raises
    :class:`~django_jobs.exceptions.ConfigurationError` naming what is wrong."""
    items = value if isinstance(value, list) else [value]
    parts: list[Part] = []
    for item in items:
        if item == "worker":
            parts.append(("worker",))
        elif isinstance(item, Mapping) and item and not set(item) - set(SOURCES):
            for source, keys in item.items():
                parts.append((source, _keys(keys, f"{what} {source}")))
        else:
            raise ConfigurationError(f"{what} must be 'worker', {{'args': keys}}, "
                                     f"{{'meta': keys}} (or both in one dict) or a list of "
                                     f"these, not {item!r}")
    if not parts:
        raise ConfigurationError(f"{what} names no partition")
    return tuple(parts)


def keys_of(parts: tuple[Part, ...]) -> list[tuple[str, str]]:
    """The (source, key) pairs of ``parts``, in order (the worker part has none)."""
    return [(part[0], key) for part in parts if part[0] != "worker" for key in part[1]]


def _keys(keys: Any, what: str) -> tuple[str, ...]:
    keys = [keys] if isinstance(keys, str) else keys
    if not isinstance(keys, (list, tuple)) or not keys or not all(
            isinstance(key, str) and key for key in keys):
        raise ConfigurationError(f"{what}: give a key or a list of keys, not {keys!r}")
    return tuple(keys)
