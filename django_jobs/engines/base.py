"""The engine contract: what django_jobs asks of a database, and what each one can do.

An engine wraps one database alias. :class:`Engine` is the one place that says what an engine
must provide (the abstract methods) and what it can do (the capability flags), so code asks
``engine.has_listen_notify`` instead of testing ``connection.vendor``. The statements shared by
every database are written here once; the SQL that differs lives in the subclasses, one per
file. ``tests/test_engine_contract.py`` runs the same contract suite against each engine.

Every change of a job's state, other than the fetch, goes through one door:
:meth:`Engine.transition` (the acker, snoozes, the lifeline, the stager, cancel, retry and
delete from ``control`` and the admin, the pruner, the testing helpers). It keeps
``unique_key`` and the finished timestamps consistent with the new state and, when receivers
are connected, sends :data:`~django_jobs.signals.state_changed` inside the same transaction.
"""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Collection, Mapping, Sequence
from contextlib import nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import connections, transaction
from django.db.models import Case, F, JSONField, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from .. import features, signals
from ..execution.outcome import Outcome
from ..jsonutil import dumps
from ..models import (FINISHED_AT, FINISHED_STATES, Job, JobChange, JobState, Peer, Producer,
                      error_entry, unique_key_after)
from .wakeup import wake_local

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import Field

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

#: Most rows one per-job UPDATE of the door carries.
WRITE_CHUNK = 500


class Row(NamedTuple):
    """What the door needs of a job it was given as ``known``: a lighter ``Job``."""

    worker: str
    queue: str
    meta: dict
    state: str
    attempt: int | None = None


class Engine(abc.ABC):
    """Database operations on the jobs tables of one database alias.

    An engine must provide :meth:`fetch_statement` (claiming jobs is where databases differ
    most) and declare its capabilities:

    * ``vendor``: the ``connection.vendor`` it serves;
    * ``has_listen_notify``: inserts and control messages reach other processes at once
      (LISTEN/NOTIFY). Without it, :meth:`notify` wakes only this process's producers and the
      others poll; :meth:`announce` does nothing and nodes read control state from their
      producer rows on their next heartbeat;
    * ``max_query_params``: the most bind parameters one statement may carry (inserts are
      chunked by it).

    And :meth:`serialize`, which each engine implements with what its database has (advisory
    locks on PostgreSQL, the single writer on SQLite).

    Everything else has a shared implementation here that an engine may override with faster
    SQL, keeping the documented behaviour (the contract suite checks both engines alike).
    """

    vendor: str = ""
    has_listen_notify: bool = False
    max_query_params: int = 999

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
        """Jobs from rows of ``SELECT/RETURNING *`` (``names`` are the column names)."""
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

    # -- the door: every change of a job's state ----------------------------------------------

    def transition(self, jobs: QuerySet | Collection[int] | None, state: str | None, *,
                   only_from: Collection[str], values: Mapping[str, Any] | None = None,
                   each: Mapping[int, Mapping[str, Any]] | None = None,
                   known: Mapping[int, Any] | None = None, interrupting: bool = False) -> int:
        """Move ``jobs`` that are in one of ``only_from`` to ``state`` (None deletes them);
        return how many changed. This is the one way a job's state is written, other than the
        fetch.

        ``jobs`` is a queryset or ids (or None with ``each``); jobs not in ``only_from`` are
        left as they are, so a change raced by another one (a job cancelled while its ack was
        on its way) never overwrites it, and writing the same change twice changes nothing.
        ``values`` are columns set on every job (values or ORM expressions); ``each`` maps job
        ids to columns set on that job alone (every mapping with the same columns), written in
        one statement per :data:`WRITE_CHUNK` jobs; there, None for a column that cannot be
        NULL (``meta``, say) keeps the job's value. ``known`` maps ids to the jobs as the
        caller holds them (their ``worker``, ``queue``, ``meta`` and ``state``), which saves
        reading the rows back. ``interrupting``: executing jobs among ``jobs`` go on running
        for a moment (a cancel from outside); their changes say so (``still_running``).

        The door keeps what goes with a state: ``unique_key`` is kept only while the new state
        is one of the job's unique states; a final state sets its timestamp
        (``completed_at``, ``cancelled_at``, ``discarded_at``: now unless given), and any other
        state clears all three. When someone watches the changes — receivers of
        :data:`~django_jobs.signals.state_changed`, or job features implementing ``acked`` for
        the workers of these jobs — the rows are locked and read first (unless ``known``), and
        the changes are handed over inside the same transaction, so that they write related
        rows atomically with the change; an exception from them rolls the change back.
        """
        columns = dict(values or {})
        if state is not None:
            columns.update(self._state_columns(state, columns, each))
        watched = self._watched(known)
        if each is not None:
            return self._transition_each(state, only_from, columns, each, known, watched)
        target = self._target(jobs).filter(state__in=list(only_from))
        if not watched:
            return self._write(target, state, columns)
        if known is not None and not isinstance(jobs, QuerySet) and all(
                pk in known for pk in jobs):
            with transaction.atomic(using=self.alias, savepoint=False):
                # The caller holds the rows: lock and write them, then hand over the ones
                # that changed (still in only_from).
                if state is None:
                    changed = list(target.select_for_update().values_list("id", flat=True))
                    self._write(self.jobs.filter(pk__in=changed), None, columns)
                else:
                    changed = self._returning_ids(target, columns)
                new_meta = columns.get("meta")
                self._hand_over([_change(pk, known[pk], _old_state(known[pk], only_from), state,
                                         new_meta, columns.get("attempt"))
                                 for pk in sorted(changed)])
            return len(changed)
        with transaction.atomic(using=self.alias, savepoint=False):
            rows = list(target.select_for_update().order_by("id")
                        .values_list("id", "worker", "queue", "meta", "state", "attempt"))
            if not rows:
                return 0
            count = self._write(self.jobs.filter(pk__in=[row[0] for row in rows],
                                                 state__in=list(only_from)), state, columns)
            new_meta = columns.get("meta")
            new_attempt = columns.get("attempt")
            self._hand_over([
                JobChange(pk, worker, queue, new_meta if isinstance(new_meta, dict) else meta,
                          old, state, interrupting and old == JobState.EXECUTING,
                          new_attempt if isinstance(new_attempt, int) else attempt, attempt)
                for pk, worker, queue, meta, old, attempt in rows])
        return count

    def _watched(self, known: Mapping[int, Any] | None) -> bool:
        """Whether a change of these jobs must be handed over (see :meth:`transition`)."""
        if signals.state_changed.has_listeners():
            return True
        if not features.any_writers("acked"):
            return False
        if known is None:
            return True
        return any(features.job_writers(job.worker, job.meta, "acked")
                   for job in known.values())

    def _hand_over(self, changes: list[JobChange]) -> None:
        """The changes to the ``state_changed`` receivers and the features that watch them,
        inside the transaction. ``send()``, not ``send_robust()``: a failure rolls the change
        back with it."""
        if not changes:
            return
        if signals.state_changed.has_listeners():
            signals.state_changed.send(Job, changes=changes, using=self.alias)
        if features.any_writers("acked"):
            by_feature: dict[Any, list[JobChange]] = {}
            for change in changes:
                for feature in features.job_writers(change.worker, change.meta, "acked"):
                    by_feature.setdefault(feature, []).append(change)
            for feature, subset in by_feature.items():
                feature.acked(subset, self.alias)

    def _target(self, jobs: QuerySet | Collection[int]) -> QuerySet:
        if isinstance(jobs, QuerySet):
            return jobs.using(self.alias).order_by()
        return self.jobs.filter(pk__in=list(jobs)).order_by()

    @staticmethod
    def _state_columns(state: str, columns: Mapping[str, Any],
                       each: Mapping[int, Mapping[str, Any]] | None) -> dict[str, Any]:
        """The columns that go with moving to ``state`` (see :meth:`transition`)."""
        given = set(columns)
        if each:
            given.update(next(iter(each.values())))
        extra: dict[str, Any] = {"state": state, "unique_key": unique_key_after(state)}
        finished = FINISHED_AT.get(state)
        for column in FINISHED_AT.values():
            if column in given:
                continue
            extra[column] = timezone.now() if column == finished else None
        return extra

    def _write(self, target: QuerySet, state: str | None, columns: Mapping[str, Any]) -> int:
        """One UPDATE (or DELETE when ``state`` is None) of ``target``."""
        if state is None:
            return target.delete()[0]
        return target.update(**columns)

    def _transition_each(self, state: str | None, only_from: Collection[str],
                         columns: dict[str, Any], each: Mapping[int, Mapping[str, Any]],
                         known: Mapping[int, Any] | None, watched: bool) -> int:
        ids = list(each)
        if not ids:
            return 0
        chunks = [ids[i:i + WRITE_CHUNK] for i in range(0, len(ids), WRITE_CHUNK)]
        if not watched:
            # Each statement only touches jobs still in only_from, so a run that fails half-way
            # can be written again; a transaction only saves commits when there are several.
            with transaction.atomic(using=self.alias) if len(chunks) > 1 else nullcontext():
                return sum(len(self._write_each(chunk, state, only_from, columns, each))
                           for chunk in chunks)
        with transaction.atomic(using=self.alias, savepoint=False):
            if known is not None and all(pk in known for pk in ids) and (
                    len(only_from) == 1 or all(getattr(known[pk], "state", None) in only_from
                                               for pk in ids)):
                # The caller holds the jobs and their old state: the statement's RETURNING
                # says which of them changed.
                changed = [pk for chunk in chunks
                           for pk in self._write_each(chunk, state, only_from, columns, each)]
                changes = [_change(pk, known[pk], _old_state(known[pk], only_from), state,
                                   each[pk].get("meta"), each[pk].get("attempt"))
                           for pk in changed]
            else:
                rows = list(self.jobs.filter(pk__in=ids, state__in=list(only_from))
                            .select_for_update().order_by("id")
                            .values_list("id", "worker", "queue", "meta", "state", "attempt"))
                locked = [row[0] for row in rows]
                for start in range(0, len(locked), WRITE_CHUNK):
                    self._write_each(locked[start:start + WRITE_CHUNK], state, only_from,
                                     columns, each)
                changes = [JobChange(pk, worker, queue, each[pk].get("meta") or meta, old, state,
                                     attempt=each[pk].get("attempt", attempt),
                                     old_attempt=attempt)
                           for pk, worker, queue, meta, old, attempt in rows]
            self._hand_over(changes)
        return len(changes)

    def _write_each(self, ids: Sequence[int], state: str | None, only_from: Collection[str],
                    columns: Mapping[str, Any], each: Mapping[int, Mapping[str, Any]]
                    ) -> list[int]:
        """One statement: the jobs ``ids`` still in ``only_from`` get ``columns`` and their
        own ``each`` values; returns the ids that changed. Engines may override this with
        faster SQL (PostgreSQL sends the values as arrays)."""
        if state is None:
            raise ValueError("per-job values make no sense for a delete")
        target = self.jobs.filter(pk__in=list(ids), state__in=list(only_from)).order_by()
        per_job = {}
        for name in next(iter(each.values()), {}):
            field = Job._meta.get_field(name)
            # None in a column that cannot be NULL keeps the job's own value (the default).
            per_job[name] = Case(*(When(pk=pk, then=Value(each[pk][name], output_field=field))
                                   for pk in ids if each[pk][name] is not None or field.null),
                                 default=None if field.null else F(name), output_field=field)
        return self._returning_ids(target, {**columns, **per_job})

    def _returning_ids(self, target: QuerySet, columns: Mapping[str, Any]) -> list[int]:
        """UPDATE ``target`` with ``columns`` and return the ids it touched: the ORM's own
        statement, with a RETURNING clause (SQLite 3.35+, PostgreSQL)."""
        query = target.query.chain(UpdateQuery)
        query.add_update_values(columns)
        compiler = query.get_compiler(self.alias)
        sql, params = compiler.as_sql()
        if not sql:
            return []
        with self.connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {self.connection.ops.quote_name('id')}", params)
            return [row[0] for row in cursor.fetchall()]

    # -- acks -----------------------------------------------------------------------------------

    def ack(self, outcomes: Sequence[Outcome]) -> None:
        """Write the outcomes of finished attempts, through :meth:`transition`.

        Outcomes are grouped by new state and changed columns; each group is one statement per
        :data:`WRITE_CHUNK` jobs. Completed jobs are one group even when only some of them
        change their meta (a recorded result): the others keep theirs.
        Every statement only touches jobs still ``executing``: a job cancelled meanwhile keeps
        its state, and writing the same outcome twice changes nothing.
        """
        if not outcomes:
            return
        if any(o.state == JobState.COMPLETED and o.changes for o in outcomes):
            outcomes = [_with_meta(o) for o in outcomes]
        groups: dict[tuple[str, tuple[str, ...]], list[Outcome]] = {}
        for outcome in outcomes:
            groups.setdefault((outcome.state, tuple(sorted(outcome.changes))), []).append(outcome)
        several = len(groups) > 1 or len(outcomes) > WRITE_CHUNK
        with transaction.atomic(using=self.alias) if several else nullcontext():
            for (state, _), group in groups.items():
                finished = FINISHED_AT.get(state)
                each = {o.job_id: {**o.changes, finished: o.at} if finished else o.changes
                        for o in group}
                known = ({o.job_id: o.job for o in group}
                         if all(o.job is not None for o in group) else None)
                shared = _shared(each)
                if shared is not None:  # the same values for every job (a chunk's members)
                    self.transition(list(each), state, only_from=(JobState.EXECUTING,),
                                    values=shared, known=known)
                else:
                    self.transition(None, state, only_from=(JobState.EXECUTING,), each=each,
                                    known=known)

    # -- leader work ----------------------------------------------------------------------------

    def stage_jobs(self, now, limit: int) -> list[str]:
        """Make scheduled and retryable jobs whose time has come available (uses the stage
        index); return the queues that got jobs, to wake their producers."""
        due = list(self.jobs.filter(state__in=[JobState.SCHEDULED, JobState.RETRYABLE],
                                    scheduled_at__lte=now)
                   .order_by("scheduled_at", "id")
                   .values_list("id", "worker", "queue", "meta", "state", "attempt")[:limit])
        if not due:
            return []
        # The door filters on the states again: a job cancelled between the two statements
        # stays cancelled.
        self.transition([row[0] for row in due], JobState.AVAILABLE,
                        only_from=(JobState.SCHEDULED, JobState.RETRYABLE),
                        known={row[0]: Row(*row[1:]) for row in due})
        return sorted({row[2] for row in due})

    def prune_jobs(self, before, limit: int) -> int:
        """Delete up to ``limit`` finished jobs that finished before ``before``.

        Selects through the prune index (the same COALESCE expression over the finished
        states) and deletes by id, so each pass is one bounded chunk.
        """
        # Oldest first, in the prune index's own order (not the model's "-id").
        rows = list(self.jobs.alias(finished=Coalesce("completed_at", "cancelled_at",
                                                      "discarded_at"))
                    .filter(state__in=FINISHED_STATES, finished__lt=before)
                    .order_by("finished").values_list("id", "worker", "queue", "meta",
                                                      "state", "attempt")[:limit])
        if not rows:
            return 0
        return self.transition([row[0] for row in rows], None, only_from=FINISHED_STATES,
                               known={row[0]: Row(*row[1:]) for row in rows})

    def rescue_orphans(self, dead_after, now) -> dict:
        """Put back jobs left ``executing`` by producers that stopped heartbeating.

        A job is orphaned when its producer (``attempted_by[1]``) has no row, or a row whose
        heartbeat is older than ``dead_after``. Jobs with attempts left go back to
        ``available``; the others are ``discarded``. Jobs of live producers are never touched,
        however long they run. Returns counts ``rescued`` and ``discarded``, and the ``queues``
        that got jobs back.
        """
        # Executing jobs first, producers second: a producer's row is written before it claims
        # anything, so a job read here belongs to a producer the next read can see. (The other
        # order would miss a node started between the reads and rescue its running jobs.)
        # Executing jobs number at most the sum of all queue limits (executing index), so the
        # producer test is done here, the same way on every engine.
        executing = list(self.jobs.filter(state=JobState.EXECUTING).only(
            "id", "state", "worker", "queue", "meta", "attempt", "max_attempts", "errors",
            "attempted_by"))
        live = {str(u) for u in Producer.objects.using(self.alias)
                .filter(heartbeat_at__gte=dead_after).values_list("uuid", flat=True)}
        orphans = [job for job in executing
                   if not (isinstance(job.attempted_by, list) and len(job.attempted_by) > 1
                           and job.attempted_by[1] in live)]
        by_state: dict[str, dict[int, dict]] = {JobState.AVAILABLE: {}, JobState.DISCARDED: {}}
        for job in orphans:
            error = error_entry(job.attempt, now,
                                "Rescued: the node running this job stopped heartbeating.")
            if job.attempt >= job.max_attempts:
                by_state[JobState.DISCARDED][job.pk] = {"errors": [*job.errors, error],
                                                        "discarded_at": now}
            else:
                by_state[JobState.AVAILABLE][job.pk] = {"errors": [*job.errors, error]}
        known = {job.pk: job for job in orphans}
        rescued = self.transition(None, JobState.AVAILABLE, only_from=(JobState.EXECUTING,),
                                  each=by_state[JobState.AVAILABLE], known=known)
        discarded = self.transition(None, JobState.DISCARDED, only_from=(JobState.EXECUTING,),
                                    each=by_state[JobState.DISCARDED], known=known)
        queues = {known[pk].queue for pk in by_state[JobState.AVAILABLE]}
        # Rows of producers that stopped heartbeating are gone for good (a live node that was
        # only cut off writes its rows again on its next heartbeat).
        stale = Producer.objects.using(self.alias).filter(heartbeat_at__lt=dead_after).delete()[0]
        return {"rescued": rescued, "discarded": discarded, "queues": sorted(queues),
                "producers_removed": stale}

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


def _shared(each: Mapping[int, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The columns of ``each`` when every job has the same values (then one plain UPDATE of
    them all does), else None."""
    rows = iter(each.values())
    first = next(rows, None)
    if first is None or len(each) == 1:
        return None
    for row in rows:
        if row != first:
            return None
    return dict(first)


def _with_meta(outcome: Outcome) -> Outcome:
    """A completion without changes, as one whose meta is None, which the door reads as "keep
    the job's meta" (so that it joins the statement of the completions that record a
    result)."""
    if outcome.state != JobState.COMPLETED or outcome.changes:
        return outcome
    return Outcome(outcome.job_id, outcome.state, outcome.at, {"meta": None}, outcome.job)


def _old_state(job: Any, only_from: Collection[str]) -> str:
    state = getattr(job, "state", None)
    return state if state in only_from else next(iter(only_from))


def _change(pk: int, job: Any, old: str, new: str | None, meta: Any,
            attempt: Any = None) -> JobChange:
    """The change of a job the caller holds (``meta`` and ``attempt`` are its new ones, if the
    change set them; the held job's attempt is the old one)."""
    before = getattr(job, "attempt", None)
    return JobChange(pk, job.worker, job.queue, meta if isinstance(meta, dict) else job.meta,
                     old, new, attempt=attempt if isinstance(attempt, int) else before,
                     old_attempt=before)
