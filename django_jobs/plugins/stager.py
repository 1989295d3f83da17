"""Stager: scheduled and retryable jobs whose time has come become available."""

from __future__ import annotations

from ..engines import Engine
from ..models import JobState
from ..transitions import KnownJob, transition
from .base import Plugin


def stage_jobs(engine: Engine, now, limit: int) -> list[str]:
    """Make up to ``limit`` scheduled and retryable jobs whose time has come available (the
    stage index serves the read); return the queues that got jobs. The door wakes their
    producers."""
    due = list(engine.jobs.filter(state__in=[JobState.SCHEDULED, JobState.RETRYABLE],
                                  scheduled_at__lte=now)
               .order_by("scheduled_at", "id")
               .values_list("id", "worker", "queue", "meta", "state", "attempt")[:limit])
    if not due:
        return []
    # The door filters on the states again: a job cancelled between the two statements stays
    # cancelled.
    transition([row[0] for row in due], JobState.AVAILABLE,
               only_from=(JobState.SCHEDULED, JobState.RETRYABLE),
               known={row[0]: KnownJob(*row[1:]) for row in due}, using=engine.alias)
    return sorted({row[2] for row in due})


class Stager(Plugin):
    name = "stager"
    interval = 0.5

    def __init__(self, limit: int = 10_000) -> None:
        super().__init__()
        self.limit = limit

    def run(self, node, engine, now):
        return {"queues": stage_jobs(engine, now, self.limit)}
