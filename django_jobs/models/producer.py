"""Producers: one row per running queue per node."""

import uuid

from django.db import models

from .job import QUEUE_MAX_LENGTH


class Producer(models.Model):
    """A queue running on a node, with its limit, paused flag and heartbeat.

    ``runjobs`` writes one row per queue it runs and refreshes ``heartbeat_at``. Pause, resume
    and scale are applied by updating these rows, so every node sees them. The lifeline rescues
    jobs whose producer stopped heartbeating: a crashed node's jobs, and only those.
    """

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.CharField(max_length=255)
    queue = models.CharField(max_length=QUEUE_MAX_LENGTH)
    limit = models.PositiveIntegerField()
    paused = models.BooleanField(default=False)
    meta = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()

    class Meta:
        db_table = "django_jobs_producer"
        indexes = [
            # Queue control and stats: the producers of one queue.
            models.Index(fields=["queue", "node"], name="django_jobs_producer_queue"),
            # Lifeline: producers whose heartbeat is older than the cut-off.
            models.Index(fields=["heartbeat_at"], name="django_jobs_producer_beat"),
        ]
        constraints = [
            models.CheckConstraint(condition=~models.Q(queue=""),
                                   name="django_jobs_producer_queue_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.queue}@{self.node} (limit {self.limit}{', paused' if self.paused else ''})"
