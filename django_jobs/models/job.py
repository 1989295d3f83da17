"""The ``Job`` model: one row per job, kept after it runs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from .progress import JSONSetKey, ProgressReporter, check_progress, send_progress, set_in_memory

QUEUE_MAX_LENGTH = 128
WORKER_MAX_LENGTH = 255


class JobState(models.TextChoices):
    """Where a job is in its life. Oban's states, plus ``suspended`` for held jobs."""

    AVAILABLE = "available", "Available"
    SCHEDULED = "scheduled", "Scheduled"
    SUSPENDED = "suspended", "Suspended"
    EXECUTING = "executing", "Executing"
    RETRYABLE = "retryable", "Retryable"
    COMPLETED = "completed", "Completed"
    DISCARDED = "discarded", "Discarded"
    CANCELLED = "cancelled", "Cancelled"


#: States a job never leaves by itself; the pruner deletes these once old enough.
FINISHED_STATES = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)

#: The timestamp column each final state sets.
FINISHED_AT: dict[str, str] = {JobState.COMPLETED: "completed_at",
                               JobState.CANCELLED: "cancelled_at",
                               JobState.DISCARDED: "discarded_at"}

#: One bit per state, for ``Job.unique_states`` (the states in which a unique job holds its slot).
STATE_BITS: dict[str, int] = {state: 1 << index for index, state in enumerate(JobState.values)}


def _state_bit() -> Case:
    return Case(*(When(state=state, then=Value(bit)) for state, bit in STATE_BITS.items()),
                default=Value(0))


@dataclass(frozen=True, slots=True)
class JobChange:
    """One job whose state changed, as :data:`django_jobs.signals.state_changed` reports it:
    its id, worker path, queue and meta (after the change), the state it left and the state it
    entered (``None`` when it was deleted), ``still_running``: the job was executing and its
    attempt goes on for a moment (a cancel from outside: the node stops it soon), and
    ``attempt`` and ``old_attempt``: the job's attempt number after and before the change
    (None where unknown; a put-back lowers it)."""

    id: int
    worker: str
    queue: str
    meta: dict[str, Any]
    old: str
    new: str | None
    still_running: bool = False
    attempt: int | None = None
    old_attempt: int | None = None


def error_entry(attempt: int, at: Any, text: str) -> dict[str, Any]:
    """One entry of ``Job.errors``: when, which attempt, and the error (a traceback or a
    reason)."""
    return {"at": at.isoformat(), "attempt": attempt, "error": text}


@functools.cache
def unique_key_after(state: str) -> Case:
    """The value ``unique_key`` takes when a job moves to ``state``: kept while ``state`` is one
    of the job's unique states, NULL otherwise.

    Every statement that changes ``state`` sets ``unique_key`` to this, so a job gives up its
    unique slot for good when it leaves its unique states, and can never collide with another
    holder when it comes back (a retry, a snooze).

    One expression per state, built once (building it costs more than an ack's own SQL on
    PostgreSQL): the ORM copies an expression when it resolves it into a query, so the shared
    one is never changed.
    """
    return Case(When(GreaterThan(F("unique_states").bitand(Value(STATE_BITS[state])), 0),
                     then=F("unique_key")), default=None,
                output_field=models.CharField(max_length=64, null=True))


def unique_key_sql(table: str = "") -> str:
    """:func:`unique_key_after` as SQL text for engines' hand-written statements: the value of
    ``unique_key`` after a move to the state whose bit is the statement's next parameter
    (``STATE_BITS[state]``). ``table`` qualifies the columns (``"job."``)."""
    return (f"CASE WHEN ({table}unique_states & %s) > 0 THEN {table}unique_key END")


class JobQuerySet(models.QuerySet):
    def write_progress(self, job: Job, value: Any) -> int:
        """Set ``meta["progress"]`` of ``job``'s row to ``value`` while the attempt that
        ``job`` is runs it; return the rows written (0 once it is over).

        A write of one meta key, not a change of state, so it does not pass the state door.
        It must not race the attempt's ack, which may write the whole meta: the UPDATE only
        touches the row while it is ``executing`` by this attempt (same ``attempt`` and
        ``attempted_by``), so a report that comes after the outcome was written, or after the
        job was cancelled, rescued and fetched again, changes nothing.
        """
        by = job.attempted_by if isinstance(job.attempted_by, list) else []
        if len(by) < 2:
            return 0
        return self.filter(pk=job.pk, state=JobState.EXECUTING, attempt=job.attempt,
                           attempted_by__0=by[0], attempted_by__1=by[1]).update(
            meta=JSONSetKey("meta", "progress", value))


class Job(models.Model):
    """A unit of work for a worker, with its whole history.

    Build jobs with ``Worker.new()`` and write them with ``django_jobs.insert()`` /
    ``insert_all()`` (or ``Worker.enqueue()``); do not create rows with ``Job.objects.create``.
    """

    state = models.CharField(max_length=16, choices=JobState.choices,
                             default=JobState.AVAILABLE)
    queue = models.CharField(max_length=QUEUE_MAX_LENGTH, default="default")
    worker = models.CharField(max_length=WORKER_MAX_LENGTH,
                              help_text="Dotted path of the worker class.")
    args = models.JSONField(default=dict)
    meta = models.JSONField(default=dict)
    tags = models.JSONField(default=list)
    errors = models.JSONField(
        default=list, help_text='One {"at", "attempt", "error"} entry per failed attempt.')
    # Plain smallints: the ranges are the table's own check constraints below (a
    # PositiveSmallIntegerField would add a second check per column, which every insert
    # evaluates: bench/README.md, "Where an enqueue's time goes").
    attempt = models.SmallIntegerField(default=0)
    max_attempts = models.SmallIntegerField(default=20)
    priority = models.SmallIntegerField(default=0, help_text="0 is the highest.")
    attempted_by = models.JSONField(
        null=True, blank=True, help_text="[node, producer id] of the last attempt.")
    inserted_at = models.DateTimeField(default=timezone.now)
    scheduled_at = models.DateTimeField(default=timezone.now)
    attempted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    discarded_at = models.DateTimeField(null=True, blank=True)
    # Uniqueness. unique_key hashes the fields the worker's `unique` option names; unique_states
    # is a STATE_BITS mask of the states in which the job blocks duplicates. The database keeps
    # unique_slot = unique_key while the job is in one of those states (NULL otherwise), and a
    # unique index on it makes the guarantee hold under concurrent inserts on every engine.
    unique_key = models.CharField(  # noqa: DJ001 (NULL: not unique, never clashes)
        max_length=64, null=True, blank=True, editable=False)
    unique_states = models.SmallIntegerField(default=0, editable=False)
    unique_slot = models.GeneratedField(
        expression=Case(
            When(GreaterThan(F("unique_states").bitand(_state_bit()), 0), then=F("unique_key")),
            default=None,
        ),
        output_field=models.CharField(max_length=64, null=True),
        db_persist=True,
        editable=False,
    )
    # Chains (django_jobs.pro.chain): the job's chain id, from its meta, as a column of its
    # own so that the chain indexes are plain ones every database matches.
    chain = models.GeneratedField(
        expression=KT("meta__chain_id"),
        output_field=models.CharField(max_length=64, null=True),
        db_persist=True,
        editable=False,
    )

    # Batches (django_jobs.pro.batch): the batch a job is a member of, from its meta (a
    # batch's callback jobs carry its batch_id too, but are not members).
    batch = models.GeneratedField(
        expression=Case(When(meta__has_key="batch_callback", then=None),
                        default=KT("meta__batch_id")),
        output_field=models.CharField(max_length=64, null=True),
        db_persist=True,
        editable=False,
    )

    objects = JobQuerySet.as_manager()

    #: The exception of the attempt whose outcome is being decided (Oban's ``unsaved_error``),
    #: set while ``backoff(job)``, the ``after_process`` hooks and the job features' ``after``
    #: steps run; None after an attempt that did not fail. Never stored: the row keeps the
    #: formatted traceback in ``errors``.
    unsaved_error: BaseException | None = None

    class Meta:
        db_table = "django_jobs_job"
        ordering = ["-id"]
        # The admin's job actions and queue controls, each granted on its own (deleting uses
        # Django's own delete_job).
        permissions = [
            ("retry_job", "Can retry jobs"),
            ("cancel_job", "Can cancel jobs"),
            ("run_job", "Can run scheduled jobs now"),
            ("control_queues", "Can pause, resume and scale queues"),
        ]
        indexes = [
            # Producer fetch: next available jobs of one queue by priority, scheduled_at, id.
            # Partial, so completed/discarded rows never enter it and fetch cost stays flat.
            models.Index(fields=["queue", "priority", "scheduled_at", "id"],
                         condition=Q(state=JobState.AVAILABLE), name="django_jobs_fetch"),
            # Stager: scheduled and retryable jobs whose scheduled_at has passed.
            models.Index(fields=["scheduled_at", "id"],
                         condition=Q(state__in=[JobState.SCHEDULED, JobState.RETRYABLE]),
                         name="django_jobs_stage"),
            # Lifeline and running counts: executing jobs per queue (checked against producers).
            models.Index(fields=["queue", "id"], condition=Q(state=JobState.EXECUTING),
                         name="django_jobs_executing"),
            # Pruner: finished jobs by the time they finished (the query uses the same COALESCE).
            models.Index(Coalesce("completed_at", "cancelled_at", "discarded_at"),
                         condition=Q(state__in=FINISHED_STATES), name="django_jobs_prune"),
            # Batches: the members of one batch (all_batch_jobs, stream_batch_jobs, the
            # sweep's recount by state).
            models.Index(fields=["batch", "id"], condition=Q(batch__isnull=False),
                         name="django_jobs_batch_members"),
            # Chains: the job before another in its chain, in insertion order.
            models.Index(fields=["chain", "id"], condition=Q(chain__isnull=False),
                         name="django_jobs_chain"),
            # Chains: the first waiting job of a chain (released when its turn comes).
            models.Index(fields=["chain", "id"],
                         condition=Q(chain__isnull=False, state=JobState.SUSPENDED),
                         name="django_jobs_chain_waiting"),
            # Chains: whether a chain has an active job (its head).
            models.Index(fields=["chain"],
                         condition=Q(chain__isnull=False,
                                     state__in=[JobState.AVAILABLE, JobState.SCHEDULED,
                                                JobState.EXECUTING, JobState.RETRYABLE]),
                         name="django_jobs_chain_active"),
            # Admin browser and stats: jobs by state and queue.
            models.Index(fields=["state", "queue"], name="django_jobs_state_queue"),
        ]
        constraints = [
            # Unique jobs: one slot holder per key (NULLs, i.e. non-unique jobs, never clash).
            models.UniqueConstraint(fields=["unique_slot"],
                                    condition=Q(unique_slot__isnull=False),
                                    name="django_jobs_unique_slot"),
            # Chains: never two running jobs of one chain (a backstop; the chain feature
            # releases one job at a time under a per-chain lock).
            models.UniqueConstraint(fields=["chain"],
                                    condition=Q(chain__isnull=False, state=JobState.EXECUTING),
                                    name="django_jobs_chain_running"),
            models.CheckConstraint(condition=Q(attempt__gte=0, attempt__lte=F("max_attempts")),
                                   name="django_jobs_attempt_range"),
            models.CheckConstraint(condition=Q(max_attempts__gte=1),
                                   name="django_jobs_max_attempts_positive"),
            models.CheckConstraint(condition=Q(priority__gte=0, priority__lte=9),
                                   name="django_jobs_priority_range"),
            models.CheckConstraint(condition=~Q(queue=""), name="django_jobs_queue_not_empty"),
            models.CheckConstraint(condition=~Q(worker=""), name="django_jobs_worker_not_empty"),
            models.CheckConstraint(condition=Q(state__in=JobState.values),
                                   name="django_jobs_state_valid"),
        ]

    #: Set on a job returned by an insert that found an existing duplicate (unique jobs).
    conflict: bool = False
    #: Writes :meth:`report_progress` to the row while an attempt runs (set by the executor).
    progress_reporter: ProgressReporter | None = None

    def __str__(self) -> str:
        return f"{self.worker}#{self.pk or 'new'} ({self.state})"

    def __repr__(self) -> str:
        return (f"<Job id={self.pk} worker={self.worker!r} queue={self.queue!r} "
                f"state={self.state!r} args={self.args!r}>")

    def report_progress(self, value: Any) -> None:
        """Report how far ``perform`` got: ``value`` is a number within 0 and 100 (a
        percentage) or any other JSON value, kept in ``meta["progress"]``.

        Under ``runjobs`` (and ``drain_queue``) it is written to the job's row, readable from
        any connection while the job runs and kept after it ends: the first report at once,
        then at most four writes a second, the last value always before the outcome. Elsewhere
        (inline mode, ``perform_job``) only this object's meta changes. Sends
        :data:`~django_jobs.signals.job_progress` every time. Raises ``InvalidJobError`` for a
        number outside 0..100 or a value JSON cannot hold.
        """
        value = check_progress(value)
        if self.progress_reporter is not None:
            self.progress_reporter.report(value)
        else:
            set_in_memory(self, value)
            send_progress(type(self), self, value)

    @property
    def progress(self) -> Any:
        """``meta["progress"]``: the last progress reported, or None."""
        return self.meta.get("progress") if isinstance(self.meta, dict) else None

    @property
    def progress_percent(self) -> float | None:
        """The progress as a number within 0 and 100 when it is one, else None."""
        value = self.progress
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100:
            return value
        return None

    @property
    def finished_at(self) -> Any:
        """When the job reached its final state, or None while it may still run."""
        return self.completed_at or self.cancelled_at or self.discarded_at
