"""Pick the engine for a database alias, once per alias."""

from __future__ import annotations

from django.db import connections

from ..exceptions import ConfigurationError
from .base import Engine
from .postgresql import PostgreSQLEngine
from .sqlite import SQLiteEngine

ENGINES: dict[str, type[Engine]] = {e.vendor: e for e in (PostgreSQLEngine, SQLiteEngine)}
_by_alias: dict[str, Engine] = {}


def get_engine(alias: str | None = None) -> Engine:
    """The engine for ``alias`` (default: ``DJANGO_JOBS["DATABASE"]``)."""
    if alias is None:
        from ..conf import jobs_settings

        alias = jobs_settings.DATABASE
    engine = _by_alias.get(alias)
    if engine is None:
        vendor = connections[alias].vendor
        if vendor not in ENGINES:
            raise ConfigurationError(
                f"database {alias!r} is {vendor}; django_jobs supports "
                f"{' and '.join(sorted(ENGINES))}")
        engine = _by_alias[alias] = ENGINES[vendor](alias)
    return engine


__all__ = ["Engine", "PostgreSQLEngine", "SQLiteEngine", "get_engine"]
