"""Pick the engine for a database alias, once per alias.

Engine modules are imported on demand, so SQLite users never need psycopg installed.
"""

from __future__ import annotations

from django.db import connections
from django.utils.module_loading import import_string

from ..conf import jobs_settings
from ..exceptions import ConfigurationError
from .base import Engine

ENGINES: dict[str, str] = {
    "postgresql": "django_jobs.engines.postgresql.PostgreSQLEngine",
    "sqlite": "django_jobs.engines.sqlite.SQLiteEngine",
}
_by_alias: dict[str, Engine] = {}


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


__all__ = ["Engine", "get_engine"]
