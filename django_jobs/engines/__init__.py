"""Pick the engine for a database alias, once per alias.

Engines are named by dotted path, as Django names its backends, and imported on demand, so
SQLite users never need psycopg installed. :func:`register_engine` names another engine for a
database vendor (a third-party engine, or a subclass of ours); see docs/engines.md.
:func:`insert_engine` is where inline mode is chosen: in the ``inline`` testing mode, inserts
go to an engine that runs the jobs at once instead of writing them
(:class:`django_jobs.execution.inline.InlineEngine`).
"""

from __future__ import annotations

import inspect

from django.db import connections
from django.utils.module_loading import import_string

from .. import modes
from ..conf import jobs_settings
from ..exceptions import ConfigurationError
from .base import Engine

ENGINES: dict[str, str] = {
    "postgresql": "django_jobs.engines.postgresql.PostgreSQLEngine",
    "sqlite": "django_jobs.engines.sqlite.SQLiteEngine",
}
#: The engine of the ``inline`` testing mode (it writes nothing: it runs what it is given).
INLINE_ENGINE = "django_jobs.execution.inline.InlineEngine"
_by_alias: dict[str, Engine] = {}
_inline: dict[str, Engine] = {}


def get_engine(alias: str | None = None) -> Engine:
    """The engine for ``alias`` (default: ``DJANGO_JOBS["DATABASE"]``)."""
    if alias is None:
        alias = jobs_settings.DATABASE
    engine = _by_alias.get(alias)
    if engine is None:
        vendor = connections[alias].vendor
        if vendor not in ENGINES:
            raise ConfigurationError(
                f"database {alias!r} is {vendor}; django_jobs supports "
                f"{' and '.join(sorted(ENGINES))}")
        engine = _by_alias[alias] = import_string(ENGINES[vendor])(alias)
    return engine


def register_engine(vendor: str, path: str | None) -> str | None:
    """Make the engine at dotted ``path`` the one for databases whose ``connection.vendor`` is
    ``vendor`` (None: no engine, so such databases are refused); return the path registered
    before (None if there was none), so a caller can put it back.

    ``path`` must name a concrete subclass of :class:`~django_jobs.engines.base.Engine` whose
    ``vendor`` is ``vendor``; anything else raises :class:`ConfigurationError` and changes
    nothing. Engines already made for databases of ``vendor`` are dropped: the next
    :func:`get_engine` makes one of the new class. Call it before anything runs jobs (in an
    ``AppConfig.ready()``, or a test's set-up).
    """
    if not isinstance(vendor, str) or not vendor:
        raise ConfigurationError(f"register_engine: vendor must be a connection.vendor such as "
                                 f"'postgresql', not {vendor!r}")
    if path is not None:
        _check_engine_class(vendor, path)
    previous = ENGINES.get(vendor)
    if path is None:
        ENGINES.pop(vendor, None)
    else:
        ENGINES[vendor] = path
    for alias in [a for a in _by_alias if connections[a].vendor == vendor]:
        del _by_alias[alias]
    return previous


def _check_engine_class(vendor: str, path: str) -> None:
    """Raise ConfigurationError unless ``path`` names a concrete Engine for ``vendor``."""
    if not isinstance(path, str) or "." not in path:
        raise ConfigurationError(f"register_engine: {path!r} is not a dotted path to an engine "
                                 f"class (e.g. 'myapp.engines.MyEngine')")
    try:
        engine_class = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"register_engine: cannot import {path!r}: {exc}") from exc
    if not (isinstance(engine_class, type) and issubclass(engine_class, Engine)):
        raise ConfigurationError(f"register_engine: {path!r} is not a subclass of "
                                 f"django_jobs.engines.base.Engine")
    if inspect.isabstract(engine_class):
        missing = ", ".join(sorted(engine_class.__abstractmethods__))
        raise ConfigurationError(f"register_engine: {path!r} is abstract: implement {missing}")
    if engine_class.vendor != vendor:
        raise ConfigurationError(f"register_engine: {path!r} serves vendor "
                                 f"{engine_class.vendor!r}, not {vendor!r} (set its vendor "
                                 f"class attribute)")


def insert_engine(alias: str | None = None) -> Engine:
    """The engine that takes inserted jobs: :func:`get_engine`'s, or in the ``inline``
    testing mode the inline engine (whose ``stores_jobs`` is False)."""
    if modes.current() != "inline":
        return get_engine(alias)
    if alias is None:
        alias = jobs_settings.DATABASE
    engine = _inline.get(alias)
    if engine is None:
        engine = _inline[alias] = import_string(INLINE_ENGINE)(alias)
    return engine


__all__ = ["Engine", "get_engine", "insert_engine", "register_engine"]
