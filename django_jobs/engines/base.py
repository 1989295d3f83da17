"""The engine interface: what django_jobs asks of a database, and what each one can do.

An engine wraps one database alias. Capabilities are declared as class attributes so code asks
``engine.has_listen_notify`` instead of testing ``connection.vendor``; the SQL that differs
between databases lives in the engine subclasses, one per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from ..models import Job

#: What every job holds when it is inserted: no attempt made yet. insert_all() resets these on
#: the jobs it writes, and engines may write them as literals.
FRESH_JOB = {
    "attempt": 0,
    "errors": [],
    "attempted_by": None,
    "attempted_at": None,
    "completed_at": None,
    "cancelled_at": None,
    "discarded_at": None,
}


class Engine:
    """Database operations on the jobs tables of one database alias."""

    #: ``connection.vendor`` this engine serves.
    vendor: str = ""
    #: Inserts can wake other processes through LISTEN/NOTIFY.
    has_listen_notify: bool = False
    #: Fetch can claim rows with ``FOR UPDATE SKIP LOCKED`` (concurrent fetchers never block).
    has_skip_locked: bool = False
    #: Writers are serialised by the database (one write transaction at a time).
    serialises_writes: bool = False
    #: Most bind parameters one statement may carry.
    max_query_params: int = 999

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @cached_property
    def insert_fields(self) -> list:
        """Concrete Job columns written on insert (not the id, not generated columns)."""
        from ..models import Job

        return [f for f in Job._meta.concrete_fields
                if not f.primary_key and not getattr(f, "generated", False)]

    @cached_property
    def insert_fields_by_name(self) -> dict:
        return {f.attname: f for f in self.insert_fields}

    def insert_jobs(self, jobs: Sequence[Job], *, skip_conflicts: bool = False) -> None:
        """Insert ``jobs`` in as few statements as the parameter limit allows; set their ids.

        With ``skip_conflicts``, rows whose unique slot is taken are skipped (``ON CONFLICT DO
        NOTHING``) and keep ``pk = None``; the jobs of one call must then have distinct
        ``unique_key`` values or be matched in order. Must run inside a transaction when more
        than one statement may be needed.
        """
        if not jobs:
            return
        fields = self.insert_fields
        table = self.connection.ops.quote_name(jobs[0]._meta.db_table)
        columns = ", ".join(self.connection.ops.quote_name(f.column) for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        chunk = max(1, self.max_query_params // len(fields))
        tail = (" ON CONFLICT DO NOTHING RETURNING id, unique_key" if skip_conflicts
                else " RETURNING id")
        connection = self.connection
        with connection.cursor() as cursor:
            for start in range(0, len(jobs), chunk):
                part = jobs[start:start + chunk]
                params = []
                for job in part:
                    params.extend(f.get_db_prep_save(getattr(job, f.attname), connection)
                                  for f in fields)
                sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(part))}{tail}"
                cursor.execute(sql, params)
                self._assign_ids(part, cursor.fetchall(), skip_conflicts)

    def _assign_ids(self, jobs: Sequence[Job], returned: list, skip_conflicts: bool) -> None:
        """Give each inserted job its id from RETURNING rows (in insertion order)."""
        if skip_conflicts:
            # Skipped rows return nothing: match the rows back by unique key, in order.
            waiting: dict[str, list[Job]] = {}
            for job in jobs:
                waiting.setdefault(job.unique_key, []).append(job)
            for pk, key in returned:
                waiting[key].pop(0).pk = pk
        else:
            for job, (pk,) in zip(jobs, returned, strict=True):
                job.pk = pk
        for job in jobs:
            if job.pk is not None:
                job._state.adding = False
                job._state.db = self.alias
