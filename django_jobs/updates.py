"""Changing a job that waits: :func:`update_job` (Oban's ``update_job``).

A job that has not started (``available``, ``scheduled``, ``retryable`` or ``suspended``) can
have its args, meta, priority, queue, time, tags and ``max_attempts`` changed. Every value is
validated as when the job was built (new args go through the worker's job features: structured
args are checked and cast, encrypted args sealed again), the unique slot follows the new
values, and the change goes through the state door like any other write.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .build import (build_job, scheduled_time, validate_max_attempts, validate_priority,
                    validate_queue, validate_tags)
from .engines import get_engine
from .exceptions import InvalidJobError, UnknownOptionError, WorkerNotImportable
from .jsonutil import round_trip
from .models import STATE_BITS, Job, JobState
from .registry import resolve_worker
from .transitions import transition

#: What :func:`update_job` may change.
UPDATABLE = ("args", "meta", "priority", "queue", "scheduled_at", "schedule_in", "tags",
             "max_attempts")
#: States of a job that may be changed: it waits, and no attempt of it is running.
WAITING = (JobState.AVAILABLE, JobState.SCHEDULED, JobState.RETRYABLE, JobState.SUSPENDED)


def update_job(job: Job | int, **changes: Any) -> Job:
    """Change the waiting job ``job`` (a ``Job`` or its id); return it as now stored.

    ``args`` replaces the args (validated and sealed by the worker's features as at build
    time); ``meta`` is merged into the job's meta (a key given as None is removed; keys set by
    the worker's features stay theirs); ``priority``, ``queue``, ``tags``, ``max_attempts``;
    ``scheduled_at`` (aware datetime) or ``schedule_in`` (a duration from now): an available
    job with a future time becomes ``scheduled``, a scheduled one whose time has come
    ``available``. Raises ``InvalidJobError`` for a job that is executing or finished (or is
    gone), a bad value, or new values that another unique job already holds; nothing is
    changed then.
    """
    unknown = [name for name in changes if name not in UPDATABLE]
    if unknown:
        close = difflib.get_close_matches(unknown[0], UPDATABLE, n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise UnknownOptionError(f"update_job cannot change {unknown[0]!r}{hint} "
                                 f"(it changes {', '.join(UPDATABLE)})")
    engine = get_engine()
    pk = job.pk if isinstance(job, Job) else int(job)
    with transaction.atomic(using=engine.alias):
        # Lock the row: no fetch, cancel or other update can change it until we commit.
        current = engine.jobs.select_for_update().filter(pk=pk).first()
        if current is None:
            raise InvalidJobError(f"job {pk} does not exist")
        if current.state not in WAITING:
            raise InvalidJobError(f"job {pk} is {current.state}: only a waiting job "
                                  f"({', '.join(WAITING)}) can be updated")
        values = _new_values(current, changes)
        state = _new_state(current, values)
        if "unique_key" in values or current.unique_key is not None:
            key = values.pop("unique_key", current.unique_key)
            values["unique_key"] = key if current.unique_states & STATE_BITS[state] else None
        try:
            with transaction.atomic(using=engine.alias):
                changed = transition([pk], state, only_from=(current.state,), columns=values,
                                     using=engine.alias)
        except IntegrityError:  # a unique job took the new slot since we looked
            raise InvalidJobError(f"job {pk}: another job holds the unique slot of the new "
                                  f"values") from None
        if changed != 1:  # cannot happen under the row lock; never report a change not made
            raise InvalidJobError(f"job {pk} changed while it was being updated")
    return engine.jobs.get(pk=pk)


def _new_values(job: Job, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns to write, validated as :func:`~django_jobs.build.build_job` would."""
    values: dict[str, Any] = {}
    if "queue" in changes:
        values["queue"] = validate_queue(changes["queue"])
    if "priority" in changes:
        values["priority"] = validate_priority(changes["priority"])
    if "max_attempts" in changes:
        values["max_attempts"] = validate_max_attempts(changes["max_attempts"])
        if values["max_attempts"] < job.attempt:
            raise InvalidJobError(f"max_attempts {values['max_attempts']} is below the "
                                  f"{job.attempt} attempts job {job.pk} has made")
    if "tags" in changes:
        values["tags"] = validate_tags(changes["tags"])
    at = scheduled_time(changes, timezone.now())
    if at is not None:
        values["scheduled_at"] = at
    meta = dict(job.meta) if isinstance(job.meta, dict) else {}
    if "meta" in changes:
        given = changes["meta"]
        if not isinstance(given, Mapping):
            raise InvalidJobError(f"meta must be a dict, not {type(given).__name__}")
        for key, value in round_trip(dict(given), "meta").items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        values["meta"] = meta
    if "args" in changes:
        values.update(_rebuilt(job, changes["args"], values, meta, set(changes.get("meta", ()))))
    elif job.unique_key is not None and {"queue", "meta"} & set(values):
        values.update(_unique_key(job, job.args, values.get("queue", job.queue), meta))
    return values


def _rebuilt(job: Job, args: Any, values: Mapping[str, Any], meta: dict,
             given: set[str]) -> dict[str, Any]:
    """New args as the worker's features build them (validated, cast, sealed), the meta
    keys the features set for them, and the unique key that follows (``given``: the meta keys
    the caller changed)."""
    try:
        worker = resolve_worker(job.worker)
    except WorkerNotImportable as exc:
        raise InvalidJobError(f"job {job.pk}: its args cannot be checked: {exc}") from None
    options = {"queue": values.get("queue", job.queue), "meta": meta}
    built = build_job(worker, args, options)
    # Keys the features set on the rebuilt job (a chain's id, a deadline...) must not move the
    # job elsewhere: a job changes its args, not its chain or batch.
    moved = [key for key, value in built.meta.items()
             if key in job.meta and key not in given and value != job.meta[key]]
    if moved:
        raise InvalidJobError(f"job {job.pk}: the new args change {', '.join(sorted(moved))} "
                              f"of its meta (another chain or batch); enqueue a new job "
                              f"instead")
    result: dict[str, Any] = {"args": built.args, "meta": {**meta, **built.meta}}
    if job.unique_key is not None or built.unique_key is not None:
        result.update(_unique_key(job, built.args, options["queue"], result["meta"]))
    return result


def _unique_key(job: Job, args: Any, queue: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The unique key for the new values, by the worker's own ``unique`` option; refuses when
    that option is unknown (set per job at insert) or the key is held by another job."""
    try:
        spec = resolve_worker(job.worker)._defaults["unique"]
    except WorkerNotImportable:
        spec = None
    if spec is None:
        raise InvalidJobError(f"job {job.pk} is unique by options given when it was inserted, "
                              f"which are not stored: its args, meta and queue cannot be "
                              f"changed (enqueue a new job instead)")
    key = spec.key(worker=job.worker, queue=queue, args=args, meta=meta)
    if key != job.unique_key and Job.objects.using(job._state.db).filter(
            unique_slot=key).exclude(pk=job.pk).exists():
        raise InvalidJobError(f"job {job.pk}: another job holds the unique slot of the new "
                              f"values")
    return {"unique_key": key}


def _new_state(job: Job, values: Mapping[str, Any]) -> str:
    """An available job moved to the future is scheduled; a scheduled one whose new time has
    come is available. Other waiting states keep their meaning (a retry's time, a hold)."""
    if "scheduled_at" not in values or job.state not in (JobState.AVAILABLE,
                                                         JobState.SCHEDULED):
        return job.state
    return (JobState.SCHEDULED if values["scheduled_at"] > timezone.now()
            else JobState.AVAILABLE)
