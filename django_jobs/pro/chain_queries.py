"""The chain feature's reads of the jobs table (:mod:`django_jobs.pro.chain`).

A job's chain is the ``chain`` column (generated from ``meta["chain_id"]``); the chain indexes
of ``Job.Meta`` serve these queries: ``django_jobs_chain`` (the jobs of a chain in insertion
order), ``django_jobs_chain_waiting`` (its first waiting job), ``django_jobs_chain_active``
(whether it has an active job). They only read: states change through the door.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connections, models
from django.db.models import Exists, Min, OuterRef, QuerySet

from ..models.job import Job, JobState

#: States of a chain's head: the one job of a chain that is neither waiting nor finished.
CHAIN_ACTIVE = (JobState.AVAILABLE, JobState.SCHEDULED, JobState.EXECUTING, JobState.RETRYABLE)


def jobs_of(using: str | None) -> QuerySet:
    """Every job of the database ``using`` (the default one for None)."""
    return Job.objects.using(using) if using else Job.objects.all()


def chained(jobs: QuerySet) -> QuerySet:
    """The jobs of ``jobs`` that belong to a chain (their ``chain`` column is set)."""
    return jobs.filter(chain__isnull=False)


def in_chain(jobs: QuerySet, chain: str) -> QuerySet:
    return jobs.filter(chain=chain)


def chain_heads(using: str, members: Iterable[int]) -> list[dict[str, Any]]:
    """For the chain of each job of ``members`` (ids: one job of each chain is enough) that
    has no active job (available, scheduled, executing, retryable): its first waiting
    (suspended) job — ``id``, ``chain``, ``worker``, ``queue``, ``meta``, ``scheduled_at`` —
    and the state (``previous``) and ``cancelled_at`` (``previous_cancelled_at``) of the job
    before it in the chain (None when there is none).

    One statement whatever the number of chains, each chain a few index probes (a chain may
    hold thousands of finished jobs). It runs on every ack that finishes chained jobs, so it
    is written out, in SQL that both databases run alike (plain columns only).
    """
    members = sorted(set(members))
    if not members:
        return []
    connection = connections[using]
    placeholders = ", ".join(["%s"] * len(members))
    with connection.cursor() as cursor:
        # m: a member of each chain; w: the chain's first waiting job (through the
        # chain_waiting index, in its own (chain, id) order); p: the job before w (the chain
        # index); the NOT EXISTS probes the chain_active index.
        cursor.execute(f"""
            SELECT w.id, w.chain, w.worker, w.queue, w.meta, w.scheduled_at,
                   p.state, p.cancelled_at
            FROM django_jobs_job m
            JOIN django_jobs_job w ON w.id = (
                SELECT x.id FROM django_jobs_job x
                WHERE x.chain = m.chain AND x.state = 'suspended'
                ORDER BY x.chain, x.id LIMIT 1)
            LEFT JOIN django_jobs_job p ON p.id = (
                SELECT y.id FROM django_jobs_job y
                WHERE y.chain = m.chain AND y.id < w.id
                ORDER BY y.chain DESC, y.id DESC LIMIT 1)
            WHERE m.id IN ({placeholders}) AND m.chain IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM django_jobs_job a
                WHERE a.chain = m.chain
                  AND a.state IN ('available', 'scheduled', 'executing', 'retryable'))
        """, members)
        rows = cursor.fetchall()
    fields = Job._meta
    meta, scheduled, cancelled = (fields.get_field(name) for name in (
        "meta", "scheduled_at", "cancelled_at"))
    heads, seen = [], set()
    for pk, chain, worker, queue, meta_value, scheduled_at, previous, cancelled_at in rows:
        if pk in seen:  # two members of one chain
            continue
        seen.add(pk)
        heads.append({"id": pk, "chain": chain, "worker": worker, "queue": queue,
                      "meta": _from_db(meta, meta_value, connection),
                      "scheduled_at": _from_db(scheduled, scheduled_at, connection),
                      "previous": previous,
                      "previous_cancelled_at": _from_db(cancelled, cancelled_at, connection)})
    return heads


def chains_with_other_active(using: str, jobs: dict[int, str]) -> set[int]:
    """Of ``jobs`` (job id -> its chain), those whose chain has an active job other than the
    jobs given for that chain (one statement, through the chain_active index)."""
    if not jobs:
        return set()
    busy = set(chained(jobs_of(using)).filter(chain__in=set(jobs.values()),
                                              state__in=CHAIN_ACTIVE)
               .exclude(pk__in=list(jobs)).order_by().values_list("chain", flat=True)
               .distinct())
    return {pk for pk, chain in jobs.items() if chain in busy}


def waiting_chains(using: str, limit: int = 1000) -> list[int]:
    """One waiting job of each chain with waiting jobs and no active one (the leader's repair
    sweep)."""
    jobs = jobs_of(using)
    active = jobs.filter(chain=OuterRef("chain"), state__in=CHAIN_ACTIVE)
    return list(chained(jobs).filter(state=JobState.SUSPENDED).filter(~Exists(active))
                .order_by().values("chain").annotate(member=Min("id"))
                .values_list("member", flat=True)[:limit])


def chain_neighbours(job: Job) -> tuple[Job | None, Job | None]:
    """The jobs before and after ``job`` in its chain (None where there is none)."""
    chain = job.chain
    if not chain:
        return None, None
    jobs = in_chain(jobs_of(job._state.db), chain)
    return (jobs.filter(id__lt=job.pk).order_by("-id").first(),
            jobs.filter(id__gt=job.pk).order_by("id").first())


def _from_db(field: models.Field, value: Any, connection: Any) -> Any:
    """A raw column value as the ORM would give it (JSON decoded, SQLite datetimes parsed)."""
    if value is None:
        return None
    expression = field.get_col(field.model._meta.db_table)
    for converter in (connection.ops.get_db_converters(expression)
                      + field.get_db_converters(connection)):
        value = converter(value, expression, connection)
    return value
