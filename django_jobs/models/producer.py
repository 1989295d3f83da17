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


class QueueCommandQuerySet(models.QuerySet):
    def last_id(self) -> int:
        """The id of the newest command (0 when there is none): a node starting now applies
        only the commands after it, since its settings decide what it runs at start."""
        return self.order_by("-id").values_list("id", flat=True).first() or 0


class QueueCommand(models.Model):
    """A queue started or stopped at run time (``django_jobs.start_queue`` / ``stop_queue``),
    for every node (``node`` empty) or the nodes of one name.

    Pause, resume and scale change the rows of running producers; a start concerns a queue
    that may have no producer on a node yet, so it is recorded here, and every running node
    applies the commands it has not applied yet, in id order, on its next heartbeat (at once on
    PostgreSQL, where a control NOTIFY wakes it). A node applies only commands newer than its
    own start: what it runs at start comes from its settings. Commands are short-lived: those
    older than :attr:`TTL` seconds are deleted whenever a new one is recorded, so the table
    holds at most the last few minutes of commands (a node cut off from the database for
    longer misses them).
    """

    #: Seconds a command is kept for nodes to read it.
    TTL = 300

    class Action(models.TextChoices):
        START = "start", "Start"
        STOP = "stop", "Stop"

    id = models.BigAutoField(primary_key=True)
    action = models.CharField(max_length=8, choices=Action.choices)
    queue = models.CharField(max_length=QUEUE_MAX_LENGTH)
    node = models.CharField(max_length=255, blank=True, default="",
                            help_text="The node name it applies to; empty for every node.")
    limit = models.PositiveIntegerField(null=True, blank=True,
                                        help_text="The limit of a started queue.")
    created_at = models.DateTimeField()

    objects = QueueCommandQuerySet.as_manager()

    class Meta:
        db_table = "django_jobs_queue_command"
        # No index beyond the primary key: nodes read the commands after an id (a range of
        # the primary key), and the table holds only the last few minutes of commands.
        constraints = [
            models.CheckConstraint(condition=~models.Q(queue=""),
                                   name="django_jobs_queue_command_queue_not_empty"),
            models.CheckConstraint(
                condition=models.Q(action="stop") | models.Q(limit__gte=1),
                name="django_jobs_queue_command_start_limit"),
        ]

    def __str__(self) -> str:
        where = f"@{self.node}" if self.node else " on every node"
        limit = f" (limit {self.limit})" if self.action == self.Action.START else ""
        return f"{self.action} {self.queue}{where}{limit}"

    def applies_to(self, node: str) -> bool:
        return not self.node or self.node == node
