"""The engine interface: what django_jobs asks of a database, and what each one can do.

An engine wraps one database alias. Capabilities are declared as class attributes so code asks
``engine.has_listen_notify`` instead of testing ``connection.vendor``; the SQL that differs
between databases lives in the engine subclasses, one per file.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from contextlib import nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db import connections

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import Field

    from ..models import Job
    from ..execution.outcome import Outcome

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

    # -- running jobs -------------------------------------------------------------------------
    #
    # The statements below are shared by both engines unless an engine overrides them; each
    # says which query and index it relies on.

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
        from ..jsonutil import dumps

        return dumps(value)

    #: Placeholder for a JSON parameter in raw SQL.
    json_placeholder = "%s"

    def fetch_statement(self, queue: str, limit: int, now, attempted_by: str,
                        ids: Sequence[int] | None = None) -> tuple[str, list]:
        """SQL and parameters that claim up to ``limit`` available jobs of ``queue`` (among
        ``ids`` when given), marking them executing, and return the claimed rows.
        Engine-specific."""
        raise NotImplementedError

    def fetch_jobs(self, queue: str, limit: int, attempted_by: list[str], now,
                   ids: Sequence[int] | None = None) -> list[Job]:
        """Claim up to ``limit`` available jobs of ``queue`` (among ``ids`` if given) in one
        statement.

        The claimed jobs are ``executing`` with ``attempt`` bumped, ``attempted_at = now`` and
        ``attempted_by``; they come back ordered by priority, scheduled_at, id. (The producers'
        hot path: rows become jobs through ``Job.from_db`` directly, not a raw queryset.)
        """
        if limit <= 0:
            return []
        sql, params = self.fetch_statement(queue, limit, self.adapt_datetime(now),
                                           self.json_param(attempted_by), ids)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            names = tuple(column[0] for column in cursor.description)
        return self.jobs_from_rows(names, rows)

    def jobs_from_rows(self, names: tuple[str, ...], rows: Sequence[Sequence]) -> list[Job]:
        """Jobs from rows of ``SELECT/RETURNING *`` (``names`` are the column names)."""
        from ..models import Job

        if not rows:
            return []
        order, converters = self._row_layout(names)
        jobs = []
        for row in rows:
            values = [row[i] for i in order]
            for i, convert in converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            jobs.append(Job.from_db(self.alias, None, values))
        jobs.sort(key=lambda job: (job.priority, job.scheduled_at, job.pk))
        return jobs

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one engine per alias, a handful of shapes
    def _row_layout(self, names: tuple[str, ...]) -> tuple[list[int], list[tuple[int, Any]]]:
        """For columns ``names``: their positions in Job's concrete field order, and the
        conversions their raw values need (JSON text, and whatever the backend's own
        converters do, such as SQLite's datetimes)."""
        from django.db.models import JSONField

        from ..models import Job

        fields = Job._meta.concrete_fields
        order = [names.index(f.column) for f in fields]
        converters = []
        for i, field in enumerate(fields):
            if isinstance(field, JSONField):
                converters.append((i, json.loads))
                continue
            backend = self.connection.ops.get_db_converters(field.get_col(Job._meta.db_table))
            if backend:
                converters.append((i, self._chain(backend, field)))
        return order, converters

    def _chain(self, backend: list, field: Field):
        connection = self.connection
        expression = field.get_col(field.model._meta.db_table)

        def convert(value):
            for converter in backend:
                value = converter(value, expression, connection)
            return value

        return convert

    def ack(self, outcomes: Sequence[Outcome]) -> None:
        """Write the outcomes of finished attempts.

        Completed jobs are written together in one UPDATE (the common case); other outcomes
        carry an error entry or a new schedule and are written one UPDATE each. Every UPDATE
        only touches a job still ``executing``: a job cancelled meanwhile keeps its state, and
        writing the same outcome twice changes nothing.
        """
        from django.db import transaction

        from ..models import Job, JobState, unique_key_after

        if not outcomes:
            return
        jobs = Job.objects.using(self.alias)
        completed = [o for o in outcomes if o.state == JobState.COMPLETED and not o.changes]
        others = [o for o in outcomes if o.state != JobState.COMPLETED or o.changes]
        # Each statement stands alone and only touches jobs still executing, so a batch that
        # fails half-way can simply be written again; a transaction only saves commits when
        # there are several statements.
        with transaction.atomic(using=self.alias) if len(others) > 1 else nullcontext():
            for outcome in others:
                jobs.filter(pk=outcome.job_id, state=JobState.EXECUTING).update(
                    state=outcome.state, unique_key=unique_key_after(outcome.state),
                    **outcome.changes)
        for start in range(0, len(completed), 500):
            self.complete_jobs(completed[start:start + 500])

    def complete_jobs(self, outcomes: Sequence[Outcome]) -> None:
        """Mark executing jobs completed, each at its own time, in one statement."""
        from django.db.models import Case, Value, When

        from ..models import Job, JobState, unique_key_after

        Job.objects.using(self.alias).filter(
            pk__in=[o.job_id for o in outcomes], state=JobState.EXECUTING).update(
            state=JobState.COMPLETED, unique_key=unique_key_after(JobState.COMPLETED),
            completed_at=Case(*(When(pk=o.job_id, then=Value(o.at)) for o in outcomes)))

    def stage_jobs(self, now, limit: int) -> list[str]:
        """Make scheduled and retryable jobs whose time has come available (uses the stage
        index); return the queues that got jobs, to wake their producers."""
        from ..models import Job, JobState, unique_key_after

        jobs = Job.objects.using(self.alias)
        due = list(jobs.filter(state__in=[JobState.SCHEDULED, JobState.RETRYABLE],
                               scheduled_at__lte=now)
                   .order_by("scheduled_at", "id").values_list("id", "queue")[:limit])
        if not due:
            return []
        # The state filter again: a job cancelled between the two statements stays cancelled.
        jobs.filter(pk__in=[pk for pk, _ in due],
                    state__in=[JobState.SCHEDULED, JobState.RETRYABLE]).update(
            state=JobState.AVAILABLE, unique_key=unique_key_after(JobState.AVAILABLE))
        return sorted({queue for _, queue in due})

    def prune_jobs(self, before, limit: int) -> int:
        """Delete up to ``limit`` finished jobs that finished before ``before``.

        Selects through the prune index (the same COALESCE expression over the finished
        states) and deletes by id, so each pass is one bounded chunk.
        """
        from django.db.models.functions import Coalesce

        from ..models import FINISHED_STATES, Job

        jobs = Job.objects.using(self.alias)
        # Oldest first, in the prune index's own order (not the model's "-id").
        ids = list(jobs.alias(finished=Coalesce("completed_at", "cancelled_at", "discarded_at"))
                   .filter(state__in=FINISHED_STATES, finished__lt=before)
                   .order_by("finished").values_list("id", flat=True)[:limit])
        if not ids:
            return 0
        return jobs.filter(pk__in=ids).delete()[0]

    def rescue_orphans(self, dead_after, now) -> dict:
        """Put back jobs left ``executing`` by producers that stopped heartbeating.

        A job is orphaned when its producer (``attempted_by[1]``) has no row, or a row whose
        heartbeat is older than ``dead_after``. Jobs with attempts left go back to
        ``available``; the others are ``discarded``. Jobs of live producers are never touched,
        however long they run. Returns counts ``rescued`` and ``discarded``, and the ``queues``
        that got jobs back.
        """
        from ..models import Job, JobState, Producer, error_entry, unique_key_after

        # Executing jobs first, producers second: a producer's row is written before it claims
        # anything, so a job read here belongs to a producer the next read can see. (The other
        # order would miss a node started between the reads and rescue its running jobs.)
        # Executing jobs number at most the sum of all queue limits (executing index), so the
        # producer test is done here, the same way on every engine.
        executing = list(Job.objects.using(self.alias).filter(state=JobState.EXECUTING)
                         .values_list("id", "attempt", "max_attempts", "errors", "queue",
                                      "attempted_by"))
        live = {str(u) for u in Producer.objects.using(self.alias)
                .filter(heartbeat_at__gte=dead_after).values_list("uuid", flat=True)}
        rows = [row for row in executing
                if not (isinstance(row[5], list) and len(row[5]) > 1 and row[5][1] in live)]
        rescued = discarded = 0
        queues = set()
        for pk, attempt, max_attempts, errors, queue, _ in rows:
            error = error_entry(attempt, now,
                                "Rescued: the node running this job stopped heartbeating.")
            changes = {"errors": [*errors, error]}
            if attempt >= max_attempts:
                changes.update(state=JobState.DISCARDED, discarded_at=now)
                discarded += 1
            else:
                changes.update(state=JobState.AVAILABLE)
                rescued += 1
                queues.add(queue)
            changes["unique_key"] = unique_key_after(changes["state"])
            Job.objects.using(self.alias).filter(pk=pk, state=JobState.EXECUTING).update(**changes)
        # Rows of producers that stopped heartbeating are gone for good (a live node that was
        # only cut off writes its rows again on its next heartbeat).
        stale = Producer.objects.using(self.alias).filter(heartbeat_at__lt=dead_after).delete()[0]
        return {"rescued": rescued, "discarded": discarded, "queues": sorted(queues),
                "producers_removed": stale}

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
        from ..models import Peer

        Peer.objects.using(self.alias).filter(name=name, node=node).delete()

    # -- waking producers ---------------------------------------------------------------------

    def notify(self, queues: Sequence[str]) -> None:
        """Tell producers on every node that ``queues`` have new jobs. Engines with
        LISTEN/NOTIFY send it (delivered at commit); the others wake the producers running in
        this process once the transaction commits, and other processes find the jobs by
        polling."""
        if not queues:
            return
        from django.db import transaction

        from .wakeup import wake_local

        queues = sorted(set(queues))
        transaction.on_commit(lambda: wake_local(queues), using=self.alias)

    def announce(self, message: dict) -> None:
        """Send a control message (pause, resume, scale, cancel) to every node at once.
        Engines without LISTEN/NOTIFY leave it to the nodes' heartbeat, which reads the same
        state from the database within a second."""
