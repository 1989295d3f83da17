"""Stager: scheduled and retryable jobs whose time has come become available.

The decision (which jobs are due) is :func:`stage_jobs`'s; the write goes through the door,
which wakes the producers of the queues that got jobs.
"""

from __future__ import annotations

import datetime

from ..engines import Engine
from ..models import Job, JobState
from ..transitions import HeldJob, transition
from .base import Plugin

__all__ = ["LIMIT", "Stager", "stage_jobs"]

#: Most jobs one run makes available (the rest wait for the next run, half a second later).
LIMIT = 10_000


def stage_jobs(now: datetime.datetime, limit: int = LIMIT, *,
               using: str | None = None) -> list[str]:
    """Make up to ``limit`` scheduled and retryable jobs whose ``scheduled_at`` is at or before
    ``now`` available, the earliest first; return the queues that got jobs (sorted)."""
    # The stage index: partial on (scheduled, retryable), ordered by (scheduled_at, id).
    due = list(Job.objects.using(using).filter(
        state__in=[JobState.SCHEDULED, JobState.RETRYABLE], scheduled_at__lte=now)
        .order_by("scheduled_at", "id")
        .values_list("id", "worker", "queue", "meta", "state", "attempt")[:limit])
    if not due:
        return []
    # The door filters on the states again: a job cancelled between the two statements stays
    # cancelled.
    transition([row[0] for row in due], JobState.AVAILABLE,
               only_from=(JobState.SCHEDULED, JobState.RETRYABLE),
               held={row[0]: HeldJob(*row[1:]) for row in due}, using=using)
    return sorted({row[2] for row in due})


class Stager(Plugin):
    """Runs :func:`stage_jobs` on the leader every half second. It has no settings."""

    name = "stager"
    interval = 0.5

    def __init__(self, limit: int = LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def run(self, node, engine: Engine, now: datetime.datetime) -> dict:
        return {"queues": stage_jobs(now, self.limit, using=engine.alias)}
