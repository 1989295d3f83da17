"""Writing jobs: ``insert`` and ``insert_all``, with unique jobs settled by the database.

Jobs are written on the connection of ``DJANGO_JOBS["DATABASE"]`` and so join the caller's
transaction: a rollback leaves no job behind.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from . import features
from .registry import resolve_worker
from .engines import Engine, insert_engine
from .engines.base import FRESH_JOB
from .exceptions import InvalidJobError, JobsError
from .models import STATE_BITS, Job
from .unique import UniqueSpec

#: FRESH_JOB split for the bulk loop: the values set as they are, and the names that get a new
#: empty list each.
_FRESH_FIXED = {name: value for name, value in FRESH_JOB.items() if value != []}
_FRESH_LISTS = tuple(name for name, value in FRESH_JOB.items() if value == [])
assert all(value is None or type(value) is int for value in _FRESH_FIXED.values())

#: Rounds of "insert, else look at the holder" before a unique insert gives up. Each round
#: means another writer changed the slot between our two statements; a handful is plenty.
UNIQUE_ROUNDS = 10


def insert(job: Job, *, using: str | None = None) -> Job:
    """Insert one job built by ``Worker.new()``; return it with its id.

    For a unique job that has a duplicate, nothing is written and the existing job is returned
    with ``conflict = True`` (its fields updated first if the job asked to ``replace`` them).
    """
    return insert_all([job], using=using)[0]


def insert_all(jobs: Iterable[Job], *, using: str | None = None) -> list[Job]:
    """Insert many jobs in bulk (one statement per chunk); return them in order, with ids.

    All or nothing: the jobs are written in one transaction (or the caller's). Unique jobs are
    honoured as by :func:`insert`; the returned list then holds the existing job, flagged
    ``conflict``, in the place of each duplicate.
    """
    jobs = list(jobs)
    for job in jobs:
        if not isinstance(job, Job):
            raise InvalidJobError(f"insert takes jobs built by Worker.new(), not {job!r}")
        if job.pk is not None:
            raise InvalidJobError(f"job {job.pk} is already inserted")
        if not hasattr(job, "_unique"):
            resolve_worker(job.worker)
    if not jobs:
        return []
    engine = insert_engine(using)
    if not engine.stores_jobs:  # inline mode: the engine runs the jobs and writes nothing
        engine.insert_jobs(jobs)
        return jobs
    now = timezone.now()
    plain: list[Job] = []
    slot_takers: list[Job] = []
    duplicate_checks: list[Job] = []
    for job in jobs:
        # FRESH_JOB's values, a new list for each list (one dict update: this loop runs for
        # every job of a bulk insert).
        state = job.__dict__
        state.update(_FRESH_FIXED)
        for name in _FRESH_LISTS:
            state[name] = []
        state["inserted_at"] = now
        if state.get("_scheduled_now", False):
            state["scheduled_at"] = now
        # A unique job starting in one of its unique states takes the slot; one starting
        # outside them (say, available with states "scheduled") only looks for a duplicate
        # holder.
        if job.unique_key is None:
            plain.append(job)
        elif job.unique_states & STATE_BITS[job.state]:
            slot_takers.append(job)
        else:
            duplicate_checks.append(job)
    # Sorted by key: concurrent insert_all calls then wait on each other's keys in one order,
    # never in a cycle (which PostgreSQL would end with a deadlock error).
    slot_takers.sort(key=lambda j: j.unique_key)
    results = {id(job): job for job in jobs}
    watchers = _watchers(jobs, "inserted")
    before = _watchers(jobs, "inserting")
    if len(jobs) == 1 and plain and not watchers and not before:
        engine.insert_jobs(plain)  # one statement, atomic by itself
        return plain
    with transaction.atomic(using=engine.alias):
        for feature, watched in before.items():  # locks taken before ids are drawn
            feature.inserting(watched, engine.alias)
        engine.insert_jobs(plain)
        if slot_takers:
            engine.insert_jobs(slot_takers, skip_conflicts=True)
            for job in slot_takers:
                if job.pk is None:
                    results[id(job)] = _settle_conflict(engine, job, now)
        if duplicate_checks:
            to_insert = []
            for job in duplicate_checks:
                holder = _duplicate_holder(engine, job, now)
                if holder is not None:
                    results[id(job)] = holder
                else:
                    job.unique_key = None  # it never holds the slot (see unique_key_after)
                    to_insert.append(job)
            engine.insert_jobs(to_insert)
        # The written moment of insert: features get the jobs they asked for (not duplicates
        # found instead), inside this transaction.
        for feature, watched in watchers.items():
            written = [job for job in watched if results[id(job)] is job and job.pk is not None]
            if written:
                feature.inserted(written, engine.alias)
    return [results[id(job)] for job in jobs]


def _watchers(jobs: list[Job], method: str) -> dict:
    """Job feature -> the jobs of ``jobs`` whose worker's pipeline has it, for the features
    implementing ``method`` (empty, at the cost of one flag, when no registered feature
    does)."""
    if not features.any_implements(method):
        return {}
    watchers: dict = {}
    # A job with an empty meta has its worker's features: looked up once per worker.
    by_worker: dict[str, tuple] = {}
    for job in jobs:
        if job.meta:
            found = features.implementing_for_job(job.worker, job.meta, method)
        else:
            found = by_worker.get(job.worker)
            if found is None:
                found = by_worker[job.worker] = features.implementing_for_job(job.worker, None,
                                                                              method)
        for feature in found:
            watchers.setdefault(feature, []).append(job)
    return watchers


def _duplicate_holder(engine: Engine, job: Job, now) -> Job | None:
    """The job holding ``job``'s key, if it is a duplicate by ``job``'s rules."""
    spec: UniqueSpec = getattr(job, "_unique", None) or UniqueSpec()
    holder = Job.objects.using(engine.alias).filter(unique_slot=job.unique_key).first()
    if holder is None or not spec.is_duplicate(holder.state, getattr(holder, spec.timestamp),
                                               now):
        return None
    _replace(engine, holder, job)
    holder.conflict = True
    return holder


def _replace(engine: Engine, holder: Job, job: Job) -> None:
    """Apply ``job``'s ``replace`` option to the duplicate ``holder`` (in the database too)."""
    fields = (getattr(job, "_replace", None) or {}).get(holder.state, ())
    if fields:
        changes = {name: getattr(job, name) for name in fields}
        Job.objects.using(engine.alias).filter(pk=holder.pk).update(**changes)
        for name, value in changes.items():
            setattr(holder, name, value)


def _settle_conflict(engine: Engine, job: Job, now) -> Job:
    """Find the job holding ``job``'s unique slot and decide, by ``job``'s rules, between
    returning it as the duplicate and taking the slot over.

    A holder outside the new job's ``states`` or ``period`` gives up its slot (its
    ``unique_key`` is cleared) and the insert is tried again. Any concurrent writer is stopped
    by the unique index, never by timing, so at most one job holds a key at any time.
    """
    spec: UniqueSpec = getattr(job, "_unique", None) or UniqueSpec()
    jobs = Job.objects.using(engine.alias)
    for _ in range(UNIQUE_ROUNDS):
        # Lock the holder (PostgreSQL) so a replace or a release acts on the row we judged.
        holder = jobs.select_for_update().filter(unique_slot=job.unique_key).first()
        if holder is None:
            engine.insert_jobs([job], skip_conflicts=True)
            if job.pk is not None:
                return job
            continue
        if spec.is_duplicate(holder.state, getattr(holder, spec.timestamp), now):
            _replace(engine, holder, job)
            holder.conflict = True
            return holder
        jobs.filter(pk=holder.pk, unique_key=job.unique_key).update(unique_key=None)
    raise JobsError(f"unique insert of {job.worker} did not settle after {UNIQUE_ROUNDS} "
                    f"rounds: the slot {job.unique_key} keeps changing hands")
