"""The result of one attempt, as the acker writes it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from .models.job import FINISHED_AT


@dataclass(slots=True)
class Outcome:
    """What to write for a finished attempt: the new ``state`` and other column ``changes``.

    ``at`` is when the attempt ended: the engine writes it as the job's ``completed_at``,
    ``cancelled_at`` or ``discarded_at`` when the state is final. ``job`` is the job as it ran
    (its worker, queue and meta go with the ``state_changed`` signal). Completed jobs whose only
    change is their meta are written in bulk.
    """

    job_id: int
    state: str
    at: datetime.datetime
    changes: dict[str, Any] = field(default_factory=dict)
    job: Any = None

    def apply_to(self, job: Any) -> None:
        """Set the outcome on an in-memory job, as the database row would read after the ack."""
        job.state = self.state
        for name, value in self.changes.items():
            setattr(job, name, value)
        finished = FINISHED_AT.get(self.state)
        if finished:
            setattr(job, finished, self.at)
