"""Helpers shared by the test modules: job factories, reading jobs back, waiting for them,
and counting statements.

Waits with deadlines, thread races and joins are in tests/waits.py; ``runjobs`` child
processes in tests/processes.py.
"""

import time
import uuid as uuid_module
from collections import Counter

from django.db import connections
from django.utils import timezone

from django_jobs.contract.support import count_statements  # noqa: F401 - re-exported
from django_jobs.insertion import insert_all
from django_jobs.models import Job, Producer

from .waits import TIMEOUT, wait_until

# -- job factories ------------------------------------------------------------------------------


def insert_jobs(worker, count: int, **args) -> list[Job]:
    """Insert ``count`` jobs of ``worker`` in one ``insert_all``, with ``args`` plus
    ``{"n": i}``; return them in order."""
    return insert_all(worker.new(dict(args, n=i)) for i in range(count))


def set_state(job, state: str, **fields) -> Job:
    """Put ``job`` (a Job or an id) in ``state`` with ``fields`` by a queryset update, as the
    runtime would (no model ``save``); return it fresh from the database."""
    Job.objects.filter(pk=getattr(job, "pk", job)).update(state=state, **fields)
    return reload(job)


def producer_row(node: str = "some-node", queue: str = "default", *, limit: int = 1,
                 heartbeat_at=None, uuid=None, **fields) -> Producer:
    """A producer row as a node writes it when it starts (started and heartbeated now, unless
    ``heartbeat_at`` says when): another node, live or dead, as far as the database goes."""
    heartbeat_at = heartbeat_at or timezone.now()
    return Producer.objects.create(uuid=uuid or uuid_module.uuid4(), node=node, queue=queue,
                                   limit=limit, started_at=heartbeat_at,
                                   heartbeat_at=heartbeat_at, **fields)


# -- reading jobs back --------------------------------------------------------------------------


def reload(job) -> Job:
    """``job`` (a Job or an id) fresh from the database."""
    return Job.objects.get(pk=getattr(job, "pk", job))


def state_of(job) -> str:
    return Job.objects.values_list("state", flat=True).get(pk=getattr(job, "pk", job))


def describe_jobs(queryset=None) -> str:
    """How many jobs are in each state, e.g. ``"4998 completed, 2 executing"`` (for the
    ``describe`` of a wait)."""
    counts = Counter((queryset if queryset is not None else Job.objects.all())
                     .values_list("state", flat=True))
    return ", ".join(f"{n} {state}" for state, n in counts.most_common()) or "no jobs"


def wait_for_state(job, *states: str, timeout: float = TIMEOUT) -> Job:
    """Wait until ``job`` is in one of ``states``; return it fresh from the database."""
    def reached():
        fresh = reload(job)
        return fresh if fresh.state in states else None

    return wait_until(reached, timeout, what=f"job {job.pk} to be {' or '.join(states)}",
                      describe=lambda: f"it is {state_of(job)}")


def wait_for_jobs(ids, state: str = "completed", timeout: float = TIMEOUT,
                  interval: float = 0.05) -> None:
    """Wait until every job of ``ids`` is in ``state``; the failure counts them by state."""
    ids = list(ids)
    jobs = Job.objects.filter(pk__in=ids)
    wait_until(lambda: jobs.filter(state=state).count() == len(ids), timeout,
               what=f"{len(ids)} jobs to be {state}", describe=lambda: describe_jobs(jobs),
               interval=interval)


# -- statements ---------------------------------------------------------------------------------


def wait_for_blocked_sessions(count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` other sessions wait for a lock (PostgreSQL), or a moment (SQLite,
    where a writer waiting for the write lock is not visible to other connections)."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        time.sleep(0.3)
        return

    def blocked() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                           "'Lock' AND datname = current_database()")
            return cursor.fetchone()[0]

    wait_until(lambda: blocked() >= count, timeout, interval=0.01,
               what=f"{count} sessions to wait for a lock",
               describe=lambda: f"{blocked()} waiting")


def jobs_settings_with(**keys):
    """``override_settings`` of ``DJANGO_JOBS``: the test settings' with ``keys`` changed (the
    built-in plugins are built anew from them, and again when the block ends)."""
    from django.conf import settings
    from django.test import override_settings

    return override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, **keys})
