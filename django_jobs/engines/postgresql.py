"""PostgreSQL: row locks with SKIP LOCKED, LISTEN/NOTIFY, concurrent writers."""

from __future__ import annotations

import datetime
import json
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cached_property
from typing import Any

import psycopg
from psycopg.types.datetime import TimestamptzLoader
from django.core.exceptions import EmptyResultSet
from django.db import models

from ..jsonutil import dumps
from ..models.job import STATE_BITS, Job, unique_key_sql
from . import wakeup
from .base import FRESH_JOB, Engine

#: NOTIFY channels: inserted jobs (payload: queue name) and control messages (payload: JSON).
INSERT_CHANNEL = "django_jobs_insert"
CONTROL_CHANNEL = "django_jobs_control"

#: SQL type of each kind of Job column, for casting parameters sent as text or arrays.
_SQL_TYPES = {
    models.CharField: "text",
    models.JSONField: "jsonb",
    models.DateTimeField: "timestamptz",
    models.PositiveSmallIntegerField: "int2",
    models.SmallIntegerField: "int2",
}

#: FRESH_JOB as SQL literals.
FRESH_JOB_SQL = {"attempt": "0", "errors": "'[]'::jsonb", "attempted_by": "NULL",
                 "attempted_at": "NULL", "completed_at": "NULL", "cancelled_at": "NULL",
                 "discarded_at": "NULL"}
assert FRESH_JOB_SQL.keys() == FRESH_JOB.keys()


#: COPY's text format (the default): the characters a text value escapes with a backslash.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
#: Rows per write to the COPY stream.
_COPY_CHUNK = 1000
#: The columns _copy_lines writes, in the order of Engine.insert_fields (checked below).
_COPY_FIELDS = ("state", "queue", "worker", "args", "meta", "tags", "errors", "attempt",
                "max_attempts", "priority", "attempted_by", "inserted_at", "scheduled_at",
                "attempted_at", "completed_at", "cancelled_at", "discarded_at", "unique_key",
                "unique_states")
assert set(FRESH_JOB) <= set(_COPY_FIELDS)


def _copy_lines(ids: Sequence[int], jobs: Sequence[Job]) -> list[str]:
    """The COPY text lines of ``jobs`` (with ``ids``), columns in ``_COPY_FIELDS`` order.

    Written out in Python rather than through psycopg's per-value adapters: most values of a
    bulk insert repeat (state, queue, worker, the two timestamps), so each distinct one is
    escaped once; the FRESH_JOB columns are literals, as in the single-row insert. Raises
    TypeError or ValueError for a value of an unexpected type (the caller then lets psycopg
    adapt the rows).
    """
    text: dict[Any, str] = {None: "\\N"}  # value -> its COPY text, for repeated values

    def escaped(value: str) -> str:
        if type(value) is not str and not isinstance(value, str):
            raise TypeError(value)
        found = text[value] = str(value).translate(_COPY_ESCAPES)
        return found

    def moment(value: Any) -> str:
        if not isinstance(value, datetime.datetime):
            raise TypeError(value)
        found = text[value] = value.isoformat()
        return found

    def json_text(value: Any) -> str:
        if value is None:
            return "\\N"
        encoded = dumps(value)
        return encoded.replace("\\", "\\\\") if "\\" in encoded else encoded

    lines = []
    get = text.get
    for pk, job in zip(ids, jobs, strict=True):
        d = job.__dict__
        state, queue, worker, inserted_at, scheduled_at, unique_key = (
            d["state"], d["queue"], d["worker"], d["inserted_at"], d["scheduled_at"],
            d["unique_key"])
        lines.append(
            f"{pk:d}\t{get(state) or escaped(state)}\t{get(queue) or escaped(queue)}\t"
            f"{get(worker) or escaped(worker)}\t{json_text(d['args'])}\t"
            f"{json_text(d['meta'])}\t{json_text(d['tags'])}\t[]\t0\t"
            f"{d['max_attempts']:d}\t{d['priority']:d}\t\\N\t"
            f"{get(inserted_at) or moment(inserted_at)}\t"
            f"{get(scheduled_at) or moment(scheduled_at)}\t\\N\t\\N\t\\N\t\\N\t"
            f"{get(unique_key) or escaped(unique_key)}\t{d['unique_states']:d}\n")
    return lines


class PostgreSQLEngine(Engine):
    """Inserts take one of three shapes, each the fastest for its case (bench/insert.py):

    * one job: a single-row ``INSERT ... VALUES`` (cheapest to plan);
    * many jobs: ``COPY``, with ids drawn from the table's sequence first so they can be
      returned (COPY has no RETURNING);
    * many unique jobs: ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING``, one
      typed array per column, since COPY cannot skip conflicts.

    All run on a server-side-binding cursor over Django's own connection, so they join the
    caller's transaction; Django's default client-side cursor would splice every value into
    the SQL text, which is what made a naive bulk insert slow.
    """

    vendor = "postgresql"
    has_listen_notify = True
    max_query_params = 65535
    #: Rows per unnest INSERT.
    insert_chunk = 5000

    def _cursor(self, *, rows: bool = False) -> psycopg.Cursor:
        """A cursor on Django's connection (so in the caller's transaction) that binds
        parameters on the server. One that reads job ``rows`` loads timestamps with psycopg's
        own (C) loader: Django's, a Python subclass of it, costs about 3 µs a value, and a job
        row has seven. (Both give aware datetimes in the session's time zone, UTC.)"""
        self.connection.ensure_connection()
        cursor = psycopg.Cursor(self.connection.connection)
        if rows:
            cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        return cursor

    @cached_property
    def _columns_sql(self) -> str:
        return ", ".join(f'"{f.column}"' for f in self.insert_fields)

    @cached_property
    def _insert_one_sql(self) -> str:
        # Columns every new job starts with (FRESH_JOB) are literals, not parameters: the
        # single-row insert is bound by the round trip, and fewer parameters make it cheaper.
        # No casts: INSERT ... VALUES types each parameter from its target column.
        values = ", ".join(FRESH_JOB_SQL.get(f.attname, "%s") for f in self.insert_fields)
        # The NOTIFY rides on RETURNING: no extra round trip, delivered at commit.
        return (f'INSERT INTO "django_jobs_job" ({self._columns_sql}) VALUES ({values}) '
                f"RETURNING id, CASE WHEN state = 'available' "
                f"THEN pg_notify('{self.channel}', queue) END")

    @cached_property
    def _insert_unique_sql(self) -> str:
        # Rows come back from RETURNING in unnest order, but conflicting rows are skipped, so
        # each row names its unique_key for matching.
        arrays = ", ".join(f"%s::{_SQL_TYPES[type(f)]}[]" for f in self.insert_fields)
        return (f'INSERT INTO "django_jobs_job" ({self._columns_sql}) '
                f"SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING RETURNING id, unique_key")

    def insert_jobs(self, jobs: Sequence[Job], *, skip_conflicts: bool = False) -> None:
        if not jobs:
            return
        with self.connection.wrap_database_errors, self._cursor() as cursor:
            if skip_conflicts:
                for start in range(0, len(jobs), self.insert_chunk):
                    part = jobs[start:start + self.insert_chunk]
                    cursor.execute(self._insert_unique_sql, self._columns(part))
                    self._assign_ids(part, cursor.fetchall(), True)
                self.notify([j.queue for j in jobs if j.pk and j.state == "available"])
            elif len(jobs) == 1:
                job = jobs[0]
                cursor.execute(self._insert_one_sql, self._one_row(job))
                job.pk = cursor.fetchone()[0]
                job._state.adding = False
                job._state.db = self.alias
                if job.state == "available" and wakeup.listening(job.queue):
                    # The NOTIFY rode on RETURNING; this process's own waiters are woken at
                    # commit without the LISTEN round trip (none: no cost but this test).
                    super().notify([job.queue])
            else:
                self._copy(cursor, jobs)
                self.notify([j.queue for j in jobs if j.state == "available"])

    @cached_property
    def _one_row_getters(self) -> tuple[Callable, tuple[int, ...]]:
        names = [f.attname for f in self.insert_fields if f.attname not in FRESH_JOB_SQL]
        json_positions = tuple(i for i, name in enumerate(names)
                               if isinstance(self.insert_fields_by_name[name], models.JSONField))
        return operator.attrgetter(*names), json_positions

    def _one_row(self, job: Job) -> list:
        """Parameters of the single-row insert (hot path of enqueue: one C call for the
        attributes, then JSON text for the JSON columns)."""
        getter, json_positions = self._one_row_getters
        row = list(getter(job))
        for i in json_positions:
            if row[i] is not None:
                row[i] = dumps(row[i])
        return row

    @cached_property
    def _copy_lines_fit(self) -> bool:
        """Whether _copy_lines writes this model's insert columns (in this order)."""
        return tuple(f.attname for f in self.insert_fields) == _COPY_FIELDS

    def _copy(self, cursor: psycopg.Cursor, jobs: Sequence[Job]) -> None:
        # Draw the ids from the identity sequence in one round trip, then COPY the rows with
        # them. Callers run this inside a transaction (insert_all), so a failed COPY leaves
        # nothing but a gap in the sequence, as any rolled-back insert does.
        cursor.execute("SELECT nextval(pg_get_serial_sequence('django_jobs_job', 'id')) "
                       "FROM generate_series(1, %s)", [len(jobs)])
        ids = [row[0] for row in cursor.fetchall()]
        lines = None
        if self._copy_lines_fit:
            try:
                lines = _copy_lines(ids, jobs)
            except (TypeError, ValueError, KeyError):
                pass  # a value the text writer does not know: psycopg's adapters take it
        with cursor.copy(f'COPY "django_jobs_job" (id, {self._columns_sql}) FROM STDIN') as copy:
            if lines is not None:
                for start in range(0, len(lines), _COPY_CHUNK):
                    copy.write("".join(lines[start:start + _COPY_CHUNK]))
            else:
                for row in zip(ids, *self._columns(jobs), strict=True):
                    copy.write_row(row)
        self._assign_ids(jobs, [(pk,) for pk in ids], False)

    def _columns(self, jobs: Sequence[Job]) -> list[list]:
        """The insert values of ``jobs`` column by column; JSON columns as JSON text."""
        columns = []
        for field in self.insert_fields:
            attname = field.attname
            if isinstance(field, models.JSONField):
                columns.append([None if (v := getattr(job, attname)) is None else dumps(v)
                                for job in jobs])
            else:
                columns.append([getattr(job, attname) for job in jobs])
        return columns

    json_placeholder = "%s::jsonb"

    #: First key of the two-key advisory locks of serialize(): django_jobs's own lock space,
    #: apart from a project's single-key advisory locks.
    lock_space = 0x646A6F62  # "djob"

    def serialize(self, keys) -> None:
        # Transaction-level advisory locks, released at commit or rollback; one statement takes
        # them all, in sorted order (no two callers wait on each other in a cycle). The second
        # key is the 32-bit hash of each key: two keys may share a lock, which only serialises
        # a little more than needed.
        if not keys:
            return
        with self.connection.wrap_database_errors, self._cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, h) FROM (SELECT DISTINCT "
                           "hashtext(k) AS h FROM unnest(%s::text[]) AS k) AS keys ORDER BY h",
                           [self.lock_space, sorted(set(keys))])

    def estimate_rows(self, queryset) -> int | None:
        # EXPLAIN gives the planner's row estimate (from pg_class.reltuples and the column
        # statistics) without reading the rows, unlike COUNT(*).
        try:
            sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
        except EmptyResultSet:  # .none(), or a filter that can match nothing
            return 0
        with self.connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    def fetch_jobs(self, queue: str, limit: int, attempted_by: list[str], now,
                   ids: Sequence[int] | None = None, worker: str | None = None) -> list[Job]:
        """As :meth:`Engine.fetch_jobs`, on a server-binding cursor (prepared when the
        connection allows it)."""
        if limit <= 0:
            return []
        sql, params = self.fetch_statement(queue, limit, now, self.json_param(attempted_by), ids,
                                           worker)
        with self.connection.wrap_database_errors, self._cursor(rows=True) as cursor:
            cursor.execute(sql, params, prepare=True)
            rows = cursor.fetchall()
            names = tuple(column.name for column in cursor.description)
        return self.jobs_from_rows(names, rows)

    def fetch_statement(self, queue: str, limit: int, now, attempted_by: str,
                        ids: Sequence[int] | None = None,
                        worker: str | None = None) -> tuple[str, list]:
        # The CTE picks the rows through the partial fetch index (state = 'available') and
        # locks them; SKIP LOCKED makes concurrent producers on any node take different rows
        # instead of waiting on each other. MATERIALIZED keeps the LIMIT applied once, before
        # the join of the UPDATE (an optimisation fence, as Oban's fetch uses).
        return """
            WITH next AS MATERIALIZED (
                SELECT id FROM django_jobs_job
                WHERE state = 'available' AND queue = %s {only} {worker}
                ORDER BY priority, scheduled_at, id
                LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE django_jobs_job AS job
            SET state = 'executing', attempt = job.attempt + 1,
                -- An available job out of attempts (a row no API writes) gets one more, as
                -- retry_job gives: the attempt check would otherwise fail the whole claim,
                -- and the queue with it, on every fetch.
                max_attempts = GREATEST(job.max_attempts, job.attempt + 1),
                attempted_at = %s, attempted_by = %s::jsonb,
                unique_key = {unique_key}
            FROM next WHERE job.id = next.id
            RETURNING job.*
        """.replace("{unique_key}", unique_key_sql("job.")).replace(
            "{only}", "" if ids is None else "AND id = ANY(%s)").replace(
            "{worker}", "" if worker is None else "AND worker = %s"), [
            queue, *([] if ids is None else [list(ids)]), *([] if worker is None else [worker]),
            limit, now, attempted_by, STATE_BITS["executing"]]

    #: Channel producers LISTEN on; the payload is the queue name.
    channel = INSERT_CHANNEL

    def notify(self, queues: Sequence[str]) -> None:
        # NOTIFY is transactional: inside a transaction it is delivered at commit, and never
        # on rollback, so producers are only woken for jobs they can see.
        if not queues:
            return
        with self.connection.wrap_database_errors, self._cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q",
                           [self.channel, sorted(set(queues))])
        # And this process's own producers at once, without the LISTEN round trip (a chain
        # released in a node's ack wakes that node's producer first).
        super().notify(queues)

    def announce(self, message: dict) -> None:
        with self.connection.wrap_database_errors, self._cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CONTROL_CHANNEL, json.dumps(message)])

    def update_each(self, ids: Sequence[int], state: str, only_from: Collection[str],
                    columns: Mapping[str, Any], each: Mapping[int, Mapping[str, Any]]
                    ) -> list[tuple[int, str]]:
        # The door's per-job statement (acks, rescues) as one UPDATE whose per-job values
        # travel as one typed array per column (server-side binding): the ORM would splice an
        # IN list and a CASE per column into the SQL text.
        #
        # The ids are probed through the primary key, whatever the table's statistics say: the
        # state test is written as an expression no index matches (`state || ''`). Written
        # plainly, on a table that has not been analysed since a bulk insert the planner may
        # pick a bitmap scan of the executing index ANDed with state_queue instead, and those
        # indexes hold an entry for every job that passed through executing until vacuum
        # removes it: thousands of dead entries read per ack, not ten primary-key probes.
        names = list(next(iter(each.values()), {}))
        shared = {k: v for k, v in columns.items() if k not in ("state", "unique_key")}
        if not names or any(hasattr(v, "resolve_expression") for v in shared.values()):
            return super().update_each(ids, state, only_from, columns, each)
        fields = self.insert_fields_by_name
        # Each column's values zipped by ROWS FROM: a typed array per plain column, and per
        # JSON column one JSON array of every job's value (one dumps for all, where a jsonb[]
        # would cost an encoding and an array escape per value in Python).
        arrays, params, values = ["unnest(%s::bigint[])"], [list(ids)], []
        for name in names:
            field = fields[name]
            if isinstance(field, models.JSONField):
                arrays.append("jsonb_array_elements(%s::jsonb)")
                params.append(dumps([each[pk][name] for pk in ids]))
                # None became JSON null: it stays SQL NULL, as None means for any column.
                values.append(f"NULLIF(v.\"{name}\", 'null'::jsonb)")
            else:
                arrays.append(f"unnest(%s::{_SQL_TYPES[type(field)]}[])")
                params.append([each[pk][name] for pk in ids])
                values.append(f'v."{name}"')
        # None for a column that cannot be NULL keeps the job's own value.
        sets = [f'"{name}" = {value}' if fields[name].null
                else f'"{name}" = COALESCE({value}, job."{name}")'
                for name, value in zip(names, values, strict=True)]
        # Shared values are typed by a cast, JSON ones sent as JSON text.
        sets += [f'"{name}" = %s::{_SQL_TYPES[type(fields[name])]}' for name in shared]
        shared = {name: dumps(value) if isinstance(fields[name], models.JSONField)
                  and value is not None else value for name, value in shared.items()}
        sql = (f"UPDATE django_jobs_job AS job SET state = %s, "
               f"unique_key = {unique_key_sql('job.')}, "
               f"{', '.join(sets)} "
               f"FROM ROWS FROM ({', '.join(arrays)}) AS v(id, {', '.join(names)}) "
               f"WHERE job.id = v.id AND (job.state || '') = ANY(%s) RETURNING job.id, job.queue")
        with self.connection.wrap_database_errors, self._cursor() as cursor:
            # Parameters in the order of their placeholders: SET, then FROM, then WHERE.
            cursor.execute(sql, [state, STATE_BITS[state], *shared.values(), *params,
                                 list(only_from)])
            return [(row[0], row[1]) for row in cursor.fetchall()]
