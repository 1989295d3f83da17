"""The engine contract: what django_jobs asks of a database, and what each one can do.

An engine wraps one database alias and executes SQL; it decides nothing about jobs' lives
(that is the state door, :mod:`django_jobs.transitions`, and the plugins) and knows nothing of
job features, signals or the runtime. :class:`Engine` is the one place that says what an engine
must provide and what it can do, so code asks ``engine.has_listen_notify`` instead of testing
``connection.vendor``.

**Capabilities** (class attributes):

* ``vendor``: the ``connection.vendor`` it serves;
* ``has_listen_notify``: inserts and control messages reach other processes at once
  (LISTEN/NOTIFY). Without it, :meth:`Engine.notify` wakes only this process's producers and
  the others poll; :meth:`Engine.announce` does nothing and nodes read control state from their
  producer rows on their next heartbeat;
* ``max_query_params``: the most bind parameters one statement may carry;
* ``stores_jobs``: inserted jobs become rows (False only for the inline engine of the testing
  mode, which runs them at once and writes nothing).

**An engine must implement** :meth:`Engine.fetch_statement` (claiming jobs is where databases
differ most) and :meth:`Engine.serialize` (advisory locks on PostgreSQL, the single writer on
SQLite).

**An engine may override**, keeping the documented behaviour, with faster SQL:
:meth:`Engine.insert_jobs`, :meth:`Engine.fetch_jobs`, :meth:`Engine.update_each`,
:meth:`Engine.notify`, :meth:`Engine.announce`, :meth:`Engine.estimate_rows`,
:meth:`Engine.is_busy`, :meth:`Engine.json_param` / ``json_placeholder``.

Everything else is shared here. :mod:`django_jobs.contract` (run by
``tests/test_engine_contract.py`` against both engines) is the contract suite a third-party
engine runs too.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.sql import DeleteQuery, UpdateQuery

from ..jsonutil import dumps
from ..models import Job, JobState, Peer
from .rows import jobs_from_rows
from .wakeup import wake_local

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

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


class Engine(abc.ABC):
    """SQL on the jobs tables of one database alias (see the module docstring for the
    contract)."""

    vendor: str = ""
    has_listen_notify: bool = False
    max_query_params: int = 999
    stores_jobs: bool = True

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @property
    def jobs(self) -> QuerySet:
        """Every job on this engine's database."""
        return Job.objects.using(self.alias)

    # -- inserting ----------------------------------------------------------------------------

    @cached_property
    def insert_fields(self) -> list:
        """Concrete Job columns written on insert (not the id, not generated columns)."""
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
        self.notify([job.queue for job in jobs if job.pk and job.state == "available"])

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

    # -- small services -----------------------------------------------------------------------

    def estimate_rows(self, queryset) -> int | None:
        """The planner's estimate of the rows ``queryset`` returns, or None when the database
        gives none (then callers count exactly)."""
        return None

    def is_busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` only means the database was busy (worth a quiet retry)."""
        return False

    def adapt_datetime(self, value):
        return self.connection.ops.adapt_datetimefield_value(value)

    def json_param(self, value) -> str:
        """A JSON value as a statement parameter (engines add a cast where needed)."""
        return dumps(value)

    #: Placeholder for a JSON parameter in raw SQL.
    json_placeholder = "%s"

    @abc.abstractmethod
    def serialize(self, keys: Collection[str]) -> None:
        """Serialise the rest of the caller's transaction with every other transaction that
        serialises on one of ``keys``, until commit or rollback (a per-chain lock, say). Must
        be called inside a transaction; keys are taken in sorted order, so two callers never
        wait on each other in a cycle."""

    # -- fetching -----------------------------------------------------------------------------

    @abc.abstractmethod
    def fetch_statement(self, queue: str, limit: int, now, attempted_by: str,
                        ids: Sequence[int] | None = None,
                        worker: str | None = None) -> tuple[str, list]:
        """SQL and parameters that claim up to ``limit`` available jobs of ``queue`` (among
        ``ids`` when given, of ``worker`` when given), marking them executing, and return the
        claimed rows. Two concurrent claims must never return the same row."""

    def fetch_jobs(self, queue: str, limit: int, attempted_by: list[str], now,
                   ids: Sequence[int] | None = None, worker: str | None = None) -> list[Job]:
        """Claim up to ``limit`` available jobs of ``queue`` (among ``ids`` if given) in one
        statement.

        The claimed jobs are ``executing`` with ``attempt`` bumped, ``attempted_at = now`` and
        ``attempted_by``; they come back ordered by priority, scheduled_at, id. (The producers'
        hot path: rows become jobs through ``Job.from_db`` directly, not a raw queryset.)
        """
        if limit <= 0:
            return []
        sql, params = self.fetch_statement(queue, limit, self.adapt_datetime(now),
                                           self.json_param(attempted_by), ids, worker)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            names = tuple(column[0] for column in cursor.description)
        return self.jobs_from_rows(names, rows)

    def claim_jobs(self, queue: str, limit: int, attempted_by: list, now, worker: str,
                   where: Q | None = None) -> list[Job]:
        """Claim, as :meth:`fetch_jobs` does, up to ``limit`` available jobs of ``queue`` and
        ``worker`` that also match ``where`` (an ORM filter on args or meta keys), in fetch
        order. Without ``where``, the fetch statement itself (one statement); with it, two in
        a transaction: the matching ids, locked and skipping locked ones where the database
        can (PostgreSQL; SQLite has one writer), then the fetch of those ids, which checks
        them again."""
        if limit <= 0:
            return []
        if where is None:
            return self.fetch_jobs(queue, limit, attempted_by, now, worker=worker)
        where &= Q(worker=worker)
        with transaction.atomic(using=self.alias, savepoint=False):
            ids = list(self.jobs.filter(where, state=JobState.AVAILABLE, queue=queue)
                       .order_by("priority", "scheduled_at", "id")
                       .select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
            return self.fetch_jobs(queue, limit, attempted_by, now, ids=ids) if ids else []

    def jobs_from_rows(self, names: tuple[str, ...], rows: Sequence[Sequence]) -> list[Job]:
        """Jobs from rows of ``SELECT/RETURNING *`` (``names`` are the column names), in fetch
        order; see :mod:`django_jobs.engines.rows`."""
        return jobs_from_rows(self.alias, names, rows)

    # -- the door's primitives (django_jobs.transitions decides; these execute) ---------------

    def lock_jobs(self, target: QuerySet, only_from: Collection[str]) -> list[tuple]:
        """Lock the jobs of ``target`` still in ``only_from`` until the transaction ends and
        read ``(id, worker, queue, meta, state, attempt)`` of each, in id order (one order for
        every caller, so two lockers never wait on each other in a cycle). On SQLite, which
        has one writer, the read needs no lock."""
        return list(target.using(self.alias).filter(state__in=list(only_from))
                    .select_for_update().order_by("id")
                    .values_list("id", "worker", "queue", "meta", "state", "attempt"))

    def update_jobs(self, target: QuerySet, only_from: Collection[str],
                    columns: Mapping[str, Any]) -> list[tuple[int, str]]:
        """One UPDATE of the jobs of ``target`` still in ``only_from``, setting ``columns``
        (values or ORM expressions); returns ``(id, queue)`` of each job it changed."""
        target = target.using(self.alias).filter(state__in=list(only_from)).order_by()
        query = target.query.chain(UpdateQuery)
        query.add_update_values(columns)
        return self._returning(query)

    def update_each(self, ids: Sequence[int], state: str, only_from: Collection[str],
                    columns: Mapping[str, Any], each: Mapping[int, Mapping[str, Any]]
                    ) -> list[tuple[int, str]]:
        """One UPDATE: the jobs ``ids`` still in ``only_from`` move to ``state`` with
        ``columns`` (the state's own columns included) and their own ``each`` values, where
        None in a column that cannot be NULL keeps the job's value; returns ``(id, queue)`` of
        each job it changed."""
        per_job = {}
        for name in next(iter(each.values()), {}):
            field = Job._meta.get_field(name)
            per_job[name] = Case(*(When(pk=pk, then=Value(each[pk][name], output_field=field))
                                   for pk in ids if each[pk][name] is not None or field.null),
                                 default=None if field.null else F(name), output_field=field)
        return self.update_jobs(self.jobs.filter(pk__in=list(ids)), only_from,
                                {**columns, **per_job})

    def delete_jobs(self, target: QuerySet, only_from: Collection[str]
                    ) -> list[tuple[int, str]]:
        """One DELETE of the jobs of ``target`` still in ``only_from``; returns ``(id,
        queue)`` of each job it deleted. (No table refers to jobs: nothing cascades.)"""
        target = target.using(self.alias).filter(state__in=list(only_from)).order_by()
        query = target.query.chain(DeleteQuery)
        return self._returning(query)

    def _returning(self, query: Any) -> list[tuple[int, str]]:
        """The ORM's own UPDATE or DELETE statement for ``query``, with a RETURNING clause
        (SQLite 3.35+, PostgreSQL)."""
        try:
            sql, params = query.get_compiler(self.alias).as_sql()
        except EmptyResultSet:  # a filter that can match nothing (pk__in=[])
            return []
        if not sql:
            return []
        quote = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {quote('id')}, {quote('queue')}", params)
            return [(row[0], row[1]) for row in cursor.fetchall()]

    # -- leadership ---------------------------------------------------------------------------

    def acquire_leadership(self, name: str, node: str, now, expires_at) -> bool:
        """Take or extend the leader lease ``name`` for ``node``; True when ``node`` holds it.

        One upsert, the same on both engines: insert the lease, or take over the row when it
        has expired or is already ours. The database settles concurrent contenders.
        """
        sql = """
            INSERT INTO django_jobs_peer (name, node, started_at, expires_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (name) DO UPDATE
            SET node = excluded.node, expires_at = excluded.expires_at,
                started_at = CASE WHEN django_jobs_peer.node = excluded.node
                                  THEN django_jobs_peer.started_at ELSE excluded.started_at END
            WHERE django_jobs_peer.node = excluded.node OR django_jobs_peer.expires_at < %s
            RETURNING node
        """
        now_param = self.adapt_datetime(now)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [name, node, now_param, self.adapt_datetime(expires_at),
                                 now_param])
            row = cursor.fetchone()
        return row is not None and row[0] == node

    def resign_leadership(self, name: str, node: str) -> None:
        Peer.objects.using(self.alias).filter(name=name, node=node).delete()

    # -- waking producers ---------------------------------------------------------------------

    def notify(self, queues: Sequence[str]) -> None:
        """Tell producers on every node that ``queues`` have new jobs. Engines with
        LISTEN/NOTIFY send it (delivered at commit); the others wake the producers running in
        this process once the transaction commits, and other processes find the jobs by
        polling."""
        if not queues:
            return
        queues = sorted(set(queues))
        transaction.on_commit(lambda: wake_local(queues), using=self.alias)

    def announce(self, message: dict) -> None:
        """Send a control message (pause, resume, scale, cancel) to every node at once.
        Engines without LISTEN/NOTIFY leave it to the nodes' heartbeat, which reads the same
        state from the database within a second."""
        return None
