"""Batches: one row per batch of jobs, with the counts its callbacks fire on.

The row is the batch's ledger, kept by the batch feature (:mod:`django_jobs.pro.batch`) in the
transactions that insert members and change their states: ``members`` (how many jobs belong to
the batch), ``attempted`` (members whose first attempt ended), and how many members are now
``completed``, ``cancelled``, ``discarded`` and ``retryable``. Every change locks the row, so
concurrent acks on any number of nodes apply their deltas one after the other, and ``fired``
(a bit per handler) records in the same transaction which callbacks were inserted: each fires
once, whatever happens to the members afterwards.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, models
from django.utils import timezone

from .job import QUEUE_MAX_LENGTH, WORKER_MAX_LENGTH

#: The handlers of a batch, by the bit of ``Batch.fired`` that records each.
HANDLERS = ("handle_attempted", "handle_completed", "handle_exhausted", "handle_cancelled",
            "handle_discarded", "handle_retryable")
HANDLER_BITS = {name: 1 << index for index, name in enumerate(HANDLERS)}
#: The counters of the ledger.
COUNTERS = ("members", "attempted", "completed", "cancelled", "discarded", "retryable")


class BatchQuerySet(models.QuerySet):
    def join(self, batch_id: str, count: int, defaults: dict[str, Any]) -> None:
        """Count ``count`` more members of ``batch_id``, creating its row with ``defaults``
        (its callback settings) if it has none. One upsert: concurrent joins add up."""
        connection = connections[self.db]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        dumps = Batch._meta.get_field("callback_args").get_db_prep_value
        with connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO django_jobs_batch (id, callback_worker, callback_queue,
                    callback_args, callback_meta, members, attempted, completed, cancelled,
                    discarded, retryable, fired, callbacks, created_at, updated_at)
                VALUES (%s, %s, %s, %s, %s, %s, 0, 0, 0, 0, 0, 0, %s, %s, %s)
                ON CONFLICT (id) DO UPDATE SET
                    members = django_jobs_batch.members + excluded.members,
                    updated_at = excluded.updated_at
            """, [batch_id, defaults.get("callback_worker", ""),
                  defaults.get("callback_queue", ""),
                  dumps(defaults.get("callback_args") or {}, connection),
                  dumps(defaults.get("callback_meta") or {}, connection), count,
                  dumps({}, connection), now, now])

    def apply(self, deltas: dict[str, dict[str, int]]) -> dict[str, Batch]:
        """Add ``deltas`` (batch id -> counter -> change) to the ledgers and return the rows
        as they are after it, locked until the transaction ends. One statement for one batch
        (the UPDATE takes the row's lock itself); for several, a locking read in id order
        first (concurrent appliers then never wait on each other in a cycle), then one UPDATE
        of them all."""
        if not deltas:
            return {}
        ids = sorted(deltas)
        connection = connections[self.db]
        if len(ids) > 1 and connection.features.has_select_for_update:
            # The locking read as plain SQL: the ORM's select_for_update queryset cost more
            # than the statement on this path, which every ack of batch members takes. (SQLite
            # has no row locks: its single writer already serialises this.)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT id FROM django_jobs_batch WHERE id IN "
                               f"({', '.join(['%s'] * len(ids))}) ORDER BY id FOR UPDATE", ids)
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(ids))
        params = [value for pk in ids for value in (
            pk, *(deltas[pk].get(name, 0) for name in COUNTERS))]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        # VALUES columns are named column1..N on both databases; several rows are locked
        # already, so the join's order does not matter. RETURNING: the rows after the change.
        return {batch.pk: batch for batch in self.raw(
            f"UPDATE django_jobs_batch SET {_APPLY_SETS}, updated_at = %s "
            f"FROM (VALUES {rows}) AS d WHERE django_jobs_batch.id = d.column1 "
            f"RETURNING {_COLUMNS}", [now, *params])}

    def locked(self, ids) -> dict[str, Batch]:
        """The rows of ``ids``, locked until the transaction ends, in id order (concurrent
        lockers never wait on each other in a cycle)."""
        return {batch.pk: batch for batch in self.select_for_update().filter(
            pk__in=sorted(set(ids))).order_by("pk")}


class Batch(models.Model):
    """A batch of jobs and its callbacks; see the module docstring."""

    id = models.CharField(max_length=64, primary_key=True)
    callback_worker = models.CharField(max_length=WORKER_MAX_LENGTH, blank=True,
                                       help_text="Dotted path of the worker whose handlers "
                                                 "run.")
    callback_queue = models.CharField(max_length=QUEUE_MAX_LENGTH, blank=True)
    callback_args = models.JSONField(default=dict, blank=True)
    callback_meta = models.JSONField(default=dict, blank=True)
    members = models.IntegerField(default=0)
    attempted = models.IntegerField(default=0, help_text="Members whose first attempt ended.")
    completed = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    discarded = models.IntegerField(default=0)
    retryable = models.IntegerField(default=0)
    fired = models.PositiveSmallIntegerField(
        default=0, help_text="One bit per handler whose callback was inserted.")
    callbacks = models.JSONField(default=dict, blank=True,
                                 help_text="Handler name -> the id of its callback job.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = BatchQuerySet.as_manager()

    class Meta:
        db_table = "django_jobs_batch"
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        indexes = [
            # The leader's sweep: the batches changed in a recent window.
            models.Index(fields=["updated_at"], name="django_jobs_batch_updated"),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.finished} of {self.members} finished)"

    @property
    def finished(self) -> int:
        return self.completed + self.cancelled + self.discarded

    @property
    def pending(self) -> int:
        """Members not finished and not waiting for a retry."""
        return max(0, self.members - self.finished - self.retryable)

    @property
    def progress(self) -> float:
        """Finished members, as a fraction of all (1.0 for an empty batch)."""
        return min(1.0, self.finished / self.members) if self.members > 0 else 1.0

    def has_fired(self, handler: str) -> bool:
        return bool(self.fired & HANDLER_BITS[handler])


#: apply()'s statement, built once: each counter plus its delta, and every column returned.
_APPLY_SETS = ", ".join(f"{name} = django_jobs_batch.{name} + d.column{i + 2}"
                        for i, name in enumerate(COUNTERS))
_COLUMNS = ", ".join(f"django_jobs_batch.{f.column}" for f in Batch._meta.concrete_fields)
