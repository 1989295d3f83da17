"""What the contract's tests share: building, setting up and reading jobs, counting
statements, and the engine under test.

Tests assert what the database holds afterwards (or what another connection sees), never what
a mock was called with. Setting up a starting state with a plain queryset update is fine
(:func:`put`); what is checked goes through the engine.
"""

from __future__ import annotations

import datetime
import tempfile
import uuid as uuid_module
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ..engines import get_engine
from ..insertion import insert_all
from ..models import FINISHED_AT, Job, JobState, Producer
from .waits import in_thread, join_all
from .workers import ContractWorker

#: The queue most tests put their jobs in.
QUEUE = "contract"
#: ``attempted_by`` of the fetches made here: [node, producer id].
BY = ["contract-node", "producer-1"]
#: Every column of a job (the generated ``unique_slot`` included), for whole-row comparisons.
COLUMNS = [f.attname for f in Job._meta.concrete_fields]
#: The finished-timestamp columns.
FINISHED_COLUMNS = tuple(FINISHED_AT.values())
#: Final and non-final states.
FINAL = tuple(FINISHED_AT)
NOT_FINAL = tuple(s for s in JobState.values if s not in FINISHED_AT)


# -- the engine under test ----------------------------------------------------------------------


class EngineMixin:
    """Gives each test ``self.engine``: the engine :func:`django_jobs.engines.get_engine`
    returns for the default database, which is the one registered for its vendor (see
    :func:`django_jobs.engines.register_engine`)."""

    def setUp(self) -> None:
        super().setUp()
        self.engine = get_engine()


def skip_unless_listen_notify(test) -> None:
    if not test.engine.has_listen_notify:
        test.skipTest(f"{test.engine.vendor}: no LISTEN/NOTIFY (has_listen_notify is False)")


def skip_if_listen_notify(test) -> None:
    if test.engine.has_listen_notify:
        test.skipTest(f"{test.engine.vendor}: has LISTEN/NOTIFY (has_listen_notify is True)")


# -- building, setting up and reading jobs ------------------------------------------------------


def ago(seconds: float, now=None) -> datetime.datetime:
    return (now or timezone.now()) - datetime.timedelta(seconds=seconds)


def later(seconds: float, now=None) -> datetime.datetime:
    return (now or timezone.now()) + datetime.timedelta(seconds=seconds)


def build(count: int = 1, queue: str = QUEUE, *, start: int = 0, **options) -> list[Job]:
    """``count`` unsaved jobs of ContractWorker in ``queue``, args ``{"n": start + i}``."""
    return [ContractWorker.new({"n": start + i}, queue=queue, **options) for i in range(count)]


def enqueue(count: int = 1, queue: str = QUEUE, **options) -> list[Job]:
    """``count`` jobs inserted (set-up: ``insert_all``)."""
    return insert_all(build(count, queue, **options))


def put(jobs, state: str, **fields) -> list[Job]:
    """Set-up: put ``jobs`` in ``state`` with ``fields`` by a plain queryset update (a starting
    point, not what the test checks: the door would clear or set columns the test wants as
    given); return them fresh from the database."""
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(state=state, **fields)
    return fresh(jobs)


def fresh(jobs) -> list[Job]:
    """``jobs`` read back, in order (fails on a job that is gone)."""
    rows = Job.objects.in_bulk([job.pk for job in jobs])
    return [rows[job.pk] for job in jobs]


def reload(job) -> Job:
    """``job`` (a Job or an id) fresh from the database."""
    return Job.objects.get(pk=getattr(job, "pk", job))


def states(jobs) -> list[str | None]:
    """The state of each of ``jobs`` (None for a deleted one)."""
    found = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "state"))
    return [found.get(job.pk) for job in jobs]


def row_values(job) -> dict:
    return {name: getattr(job, name) for name in COLUMNS}


def claim(count: int = 1, queue: str = QUEUE, **options) -> list[Job]:
    """``count`` jobs inserted and fetched: executing, attempt 1, as a producer holds them
    (``queue`` must have no other available job)."""
    jobs = enqueue(count, queue, **options)
    claimed = {job.pk: job for job in get_engine().fetch_jobs(queue, count, BY,
                                                               timezone.now())}
    assert claimed.keys() == {job.pk for job in jobs}, "set-up: the fetch missed jobs"
    return [claimed[job.pk] for job in jobs]


def producer_row(node: str, queue: str, *, limit: int = 1, heartbeat_at=None) -> Producer:
    """A producer row as a node writes it when it starts (started and heartbeated at
    ``heartbeat_at``, default now): another node, live or dead, as far as the database goes."""
    heartbeat_at = heartbeat_at or timezone.now()
    return Producer.objects.create(uuid=uuid_module.uuid4(), node=node, queue=queue,
                                   limit=limit, started_at=heartbeat_at,
                                   heartbeat_at=heartbeat_at)


def read_elsewhere(pk: int) -> str | None:
    """The state of job ``pk`` as another connection sees it (one of its own, in a thread)."""
    seen = {}

    def read():
        seen["state"] = Job.objects.filter(pk=pk).values_list("state", flat=True).first()

    join_all([in_thread(read, name="other-connection")], what="a read on another connection")
    return seen["state"]


# -- statements ---------------------------------------------------------------------------------


@contextmanager
def count_statements(using: str = DEFAULT_DB_ALIAS) -> Iterator[list[str]]:
    """Collect the statements the database runs inside the block, whoever sends them.

    ``CaptureQueriesContext`` only sees queries made through Django's cursor wrapper, and an
    engine may talk to its driver directly (COPY, server-side binding). On PostgreSQL this
    therefore traces the libpq protocol and records one entry (the command tag, e.g.
    ``"INSERT 0 5000"``, ``"COPY 5000"``, ``"SAVEPOINT"``) per statement the server completed.
    Elsewhere it records the SQL of each query that went through Django.

    The list yielded is filled when the block exits.
    """
    connection = connections[using]
    statements: list[str] = []
    if connection.vendor == "postgresql":
        from psycopg import pq  # the PostgreSQL backend's driver: present when it is used

        connection.ensure_connection()
        pgconn = connection.connection.pgconn
        with tempfile.TemporaryFile("w+") as trace:
            pgconn.trace(trace.fileno())
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                yield statements
            finally:
                pgconn.untrace()
                trace.seek(0)
                for line in trace:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) >= 4 and parts[0] == "B" and parts[2] == "CommandComplete":
                        statements.append(parts[3].strip().strip('"'))
    else:
        with CaptureQueriesContext(connection) as context:
            yield statements
        statements.extend(query["sql"] for query in context.captured_queries)


def kinds(statements: list[str]) -> list[str]:
    """The kind of each statement (``UPDATE``, ``SELECT``, ...), savepoints left out: the
    first word of PostgreSQL's command tags and of the SQL alike."""
    words = [s.split()[0].upper() for s in statements if s.strip()]
    return [w for w in words if w not in ("SAVEPOINT", "RELEASE")]
