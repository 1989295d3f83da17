"""Fixture engines for tests/test_engine_registration.py: tiny subclasses of ours, as a
third-party engine would be, that count the calls made to them.

``CountingPostgreSQLEngine`` also gives up PostgreSQLEngine's own SQL for inserting, fetching
and per-job updates and uses the shared implementations of ``Engine`` instead (what an engine
that overrides nothing gets), so the contract checks those on PostgreSQL too.
"""

from collections import Counter

from django_jobs.engines.base import Engine
from django_jobs.engines.postgresql import PostgreSQLEngine
from django_jobs.engines.sqlite import SQLiteEngine

#: The engine methods whose calls are counted.
COUNTED = ("insert_jobs", "fetch_jobs", "fetch_statement", "serialize", "lock_jobs",
           "update_jobs", "update_each", "delete_jobs", "acquire_leadership",
           "resign_leadership", "notify", "announce", "estimate_rows", "is_busy")
#: Calls of each counted method, on any counting engine, since the last ``clear()``.
calls: Counter[str] = Counter()


class Counting:
    """Counts each call of a method named in COUNTED, then runs the engine's own."""


def _counted(name: str):
    def method(self, *args, **kwargs):
        calls[name] += 1
        return getattr(super(Counting, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in COUNTED:
    setattr(Counting, _name, _counted(_name))


class CountingSQLiteEngine(Counting, SQLiteEngine):
    pass


class SharedSQLPostgreSQLEngine(PostgreSQLEngine):
    """PostgreSQL with Engine's shared insert, fetch and per-job update."""

    insert_jobs = Engine.insert_jobs
    fetch_jobs = Engine.fetch_jobs
    update_each = Engine.update_each


class CountingPostgreSQLEngine(Counting, SharedSQLPostgreSQLEngine):
    pass


#: The counting engine for each vendor.
BY_VENDOR = {"sqlite": "tests.contract_engines.CountingSQLiteEngine",
             "postgresql": "tests.contract_engines.CountingPostgreSQLEngine"}


class Elsewhere(SQLiteEngine):
    """A complete engine that says it serves another vendor."""

    vendor = "elsewhere"


class Unfinished(Engine):
    """An engine that provides neither fetch_statement nor serialize."""

    vendor = "sqlite"
