"""The door: every change of a job's state after its insert goes through :func:`transition`.

The acker (:func:`ack`), snoozes, the lifeline, the stager, cancel, retry and delete from
``control`` and the admin, the pruner, chains and the testing helpers all write here, so what
goes with a state change lives in one place. One sequence, whoever calls:

1. **resolve** the jobs: the caller holds them (``held``), or, when someone watches the
   change, a locked read of their rows (``SELECT ... FOR UPDATE``);
2. **write**: one statement setting the same values on every job, or per-job values in one
   statement per :data:`WRITE_CHUNK` jobs; ``unique_key`` and the finished timestamps follow
   the new state (:func:`state_columns`);
3. **build** one :class:`~django_jobs.models.JobChange` per changed job (:func:`job_change`);
4. **hand over** the changes, inside the same transaction, to the receivers of
   :data:`~django_jobs.signals.state_changed` and to the job features implementing ``acked``
   for these jobs (a batch's ledger, a chain's next link); an exception from them rolls the
   change back;
5. **wake** the producers of every queue whose jobs entered ``available`` (at commit: a NOTIFY
   on PostgreSQL, this process's producers elsewhere). No caller wakes producers by hand.

Engines below this module are SQL primitives and know nothing of features or signals.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import features, signals
from .engines import Engine, get_engine
from .models import FINISHED_AT, Job, JobChange, JobState, unique_key_after
from .outcome import Outcome

#: Most jobs one per-job UPDATE carries.
WRITE_CHUNK = 500


class HeldJob(NamedTuple):
    """What the door needs of a job the caller already holds (a ``Job`` does as well)."""

    worker: str
    queue: str
    meta: Any
    state: str
    attempt: int | None = None


def transition(jobs: QuerySet | Collection[int] | None, state: str | None, *,
               only_from: Collection[str], columns: Mapping[str, Any] | None = None,
               per_job: Mapping[int, Mapping[str, Any]] | None = None,
               held: Mapping[int, Any] | None = None, interrupting: bool = False,
               using: str | None = None) -> int:
    """Move ``jobs`` that are in one of ``only_from`` to ``state`` (None deletes them);
    return how many changed.

    ``jobs`` is a queryset or ids, or None when ``per_job`` names the jobs. Jobs not in
    ``only_from`` are left as they are, so a change raced by another one (a job cancelled while
    its ack was on its way) never overwrites it, and writing the same change twice changes
    nothing.

    * ``columns``: columns set on every job (values or ORM expressions);
    * ``per_job``: job id -> columns set on that job alone (every mapping with the same column
      names); None for a column that cannot be NULL (``meta``, say) keeps the job's value;
    * ``held``: job id -> the job as the caller holds it (anything with ``worker``,
      ``queue``, ``meta``, ``state`` and ``attempt``, such as a ``Job`` or a
      :class:`HeldJob`), which saves reading the rows back;
    * ``interrupting``: executing jobs among them go on running for a moment (a cancel from
      outside); their changes say so (``still_running``).

    A final state sets its timestamp (``completed_at``, ``cancelled_at``, ``discarded_at``:
    now unless given) and any other state clears all three; ``unique_key`` is kept only while
    the new state is one of the job's unique states.
    """
    engine = get_engine(using)
    only_from = tuple(only_from)
    columns = dict(columns or {})
    if state is not None:
        columns.update(state_columns(state, columns, per_job))
    if per_job is not None:
        ids = list(per_job)
    elif isinstance(jobs, QuerySet):
        ids = None
    else:
        ids = list(jobs or ())
    if ids is not None and not ids:
        return 0
    watched = _watched(held)
    chunks = ([ids[i:i + WRITE_CHUNK] for i in range(0, len(ids), WRITE_CHUNK)]
              if per_job is not None else [])
    # One statement is atomic by itself; several, or a hand-over, share a transaction (every
    # statement only touches jobs still in only_from, so a failed run can be written again).
    atomic = watched or len(chunks) > 1
    with transaction.atomic(using=engine.alias) if atomic else nullcontext():
        # 1. resolve
        resolved: Mapping[int, Any] | None = None
        if watched:
            if held is not None and ids is not None and _holds(held, ids, only_from):
                resolved = held
            else:
                target = engine.jobs.filter(pk__in=ids) if ids is not None else jobs
                resolved = {row[0]: HeldJob(*row[1:])
                        for row in engine.lock_jobs(target, only_from)}
                ids = list(resolved)
                if per_job is not None:
                    chunks = [ids[i:i + WRITE_CHUNK] for i in range(0, len(ids), WRITE_CHUNK)]
                if not ids:
                    return 0
        # 2. write
        if state is None:
            target = engine.jobs.filter(pk__in=ids) if ids is not None else jobs
            changed = engine.delete_jobs(target, only_from)
        elif per_job is not None:
            changed = [row for chunk in chunks
                       for row in engine.update_each(chunk, state, only_from, columns, per_job)]
        else:
            target = engine.jobs.filter(pk__in=ids) if ids is not None else jobs
            changed = engine.update_jobs(target, only_from, columns)
        # 3. build, 4. hand over
        if watched:
            _hand_over(engine, [
                job_change(pk, resolved[pk], only_from, state,
                           (per_job[pk] if per_job is not None else columns), interrupting)
                for pk, _ in sorted(changed)])
        # 5. wake
        if state == JobState.AVAILABLE:
            engine.notify([queue for _, queue in changed])
    return len(changed)


def ack(outcomes: Sequence[Outcome], *, using: str | None = None) -> None:
    """Write the outcomes of finished attempts, through :func:`transition`.

    Outcomes are grouped by new state and changed columns; per_job group is one statement per
    :data:`WRITE_CHUNK` jobs. Completed jobs are one group even when only some of them change
    their meta (a recorded result): the others keep theirs. Every statement only touches jobs
    still ``executing``: a job cancelled meanwhile keeps its state, and writing the same
    outcome twice changes nothing.
    """
    if not outcomes:
        return
    if any(o.state == JobState.COMPLETED and o.changes for o in outcomes):
        outcomes = [_keeping_meta(o) for o in outcomes]
    groups: dict[tuple[str, tuple[str, ...]], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.state, tuple(sorted(outcome.changes))), []).append(outcome)
    alias = get_engine(using).alias
    several = len(groups) > 1 or len(outcomes) > WRITE_CHUNK
    with transaction.atomic(using=alias) if several else nullcontext():
        for (state, _), group in groups.items():
            finished = FINISHED_AT.get(state)
            per_job = {o.job_id: {**o.changes, finished: o.at} if finished else o.changes
                    for o in group}
            held = ({o.job_id: o.job for o in group}
                     if all(o.job is not None for o in group) else None)
            shared = _shared(per_job)
            if shared is not None:  # the same values for every job (a chunk's members)
                transition(list(per_job), state, only_from=(JobState.EXECUTING,), columns=shared,
                           held=held, using=alias)
            else:
                transition(None, state, only_from=(JobState.EXECUTING,), per_job=per_job, held=held,
                           using=alias)


def ack_separately(outcomes: Sequence[Outcome], *, using: str | None = None
                   ) -> list[tuple[Outcome, Exception]]:
    """Write per_job of ``outcomes`` on its own (:func:`ack` of one), so that one that cannot be
    written (a feature's ``acked`` failing on what its row holds, say) does not hold back the
    others; return those that failed, with their errors. For a writer whose group write
    failed for another reason than a busy database."""
    failed = []
    for outcome in outcomes:
        try:
            ack([outcome], using=using)
        except Exception as exc:
            failed.append((outcome, exc))
    return failed


def state_columns(state: str, columns: Mapping[str, Any],
                  per_job: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The columns that go with moving to ``state``, besides those the caller sets
    (``columns``, and the per-job ``per_job``): the state, ``unique_key`` (the one rule:
    :func:`~django_jobs.models.unique_key_after`, unless the caller sets a new key itself, as
    ``update_job`` does), and the finished timestamps (the final state's set to now unless
    given, the others cleared)."""
    given = set(columns)
    if per_job:
        given.update(next(iter(per_job.values())))
    extra: dict[str, Any] = {"state": state}
    if "unique_key" not in given:
        extra["unique_key"] = unique_key_after(state)
    finished = FINISHED_AT.get(state)
    for column in FINISHED_AT.values():
        if column not in given:
            extra[column] = timezone.now() if column == finished else None
    return extra


def job_change(pk: int, job: Any, only_from: Sequence[str], state: str | None,
               written: Mapping[str, Any], interrupting: bool = False) -> JobChange:
    """The change of one job: ``job`` as it was (its worker, queue, meta, state and attempt),
    ``written`` the columns the change set on it. The only place a ``JobChange`` is built."""
    old = job.state if job.state in only_from else only_from[0]
    meta, attempt = written.get("meta"), written.get("attempt")
    return JobChange(pk, job.worker, job.queue, meta if isinstance(meta, dict) else job.meta,
                     old, state, interrupting and old == JobState.EXECUTING,
                     attempt if isinstance(attempt, int) else job.attempt, job.attempt)


def _holds(held: Mapping[int, Any], ids: Sequence[int], only_from: Sequence[str]) -> bool:
    """Whether the caller holds every job and knows per_job one's old state (its own, or the
    only one it can have come from): then RETURNING says which changed, with no read."""
    return all(pk in held for pk in ids) and (
        len(only_from) == 1 or all(getattr(held[pk], "state", None) in only_from for pk in ids))


def _watched(held: Mapping[int, Any] | None) -> bool:
    """Whether a change of these jobs must be handed over: someone listens to
    ``state_changed``, or a feature implementing ``acked`` may concern them (for jobs the
    caller holds, one their worker or meta names)."""
    if signals.state_changed.has_listeners():
        return True
    if not features.any_implements("acked"):
        return False
    if held is None:
        return True
    return any(features.implementing_for_job(job.worker, job.meta, "acked")
               for job in held.values())


def _hand_over(engine: Engine, changes: list[JobChange]) -> None:
    """The changes to the ``state_changed`` receivers and the features that watch them,
    inside the transaction. ``send()``, not ``send_robust()``: a failure rolls the change
    back with it."""
    if not changes:
        return
    if signals.state_changed.has_listeners():
        signals.state_changed.send(Job, changes=changes, using=engine.alias)
    if features.any_implements("acked"):
        by_feature: dict[Any, list[JobChange]] = {}
        for change in changes:
            for feature in features.implementing_for_job(change.worker, change.meta, "acked"):
                by_feature.setdefault(feature, []).append(change)
        for feature, subset in by_feature.items():
            feature.acked(subset, engine.alias)


def _shared(per_job: Mapping[int, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The columns of ``per_job`` when every job has the same values (then one plain UPDATE of
    them all does), else None."""
    rows = iter(per_job.values())
    first = next(rows, None)
    if first is None or len(per_job) == 1:
        return None
    for row in rows:
        if row != first:
            return None
    return dict(first)


def _keeping_meta(outcome: Outcome) -> Outcome:
    """A completion without changes, as one whose meta is None, which the door reads as "keep
    the job's meta" (so that it joins the statement of the completions that record a
    result)."""
    if outcome.state != JobState.COMPLETED or outcome.changes:
        return outcome
    return Outcome(outcome.job_id, outcome.state, outcome.at, {"meta": None}, outcome.job)
