"""Pick the engine for a database alias, once per alias.

Engines are named by dotted path, as Django names its backends, and imported on demand, so
SQLite users never need psycopg installed. :func:`insert_engine` is where inline mode is chosen:
in the ``inline`` testing mode, inserts go to an engine that runs the jobs at once instead of
writing them (:class:`django_jobs.execution.inline.InlineEngine`).
"""

from __future__ import annotations

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


__all__ = ["Engine", "get_engine", "insert_engine"]
