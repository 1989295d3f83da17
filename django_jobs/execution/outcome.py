"""The result of one attempt, as the acker writes it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Outcome:
    """What to write for a finished attempt: the new ``state`` and other column ``changes``.

    ``at`` is when the attempt ended. Completed jobs with no other change are written in bulk.
    """

    job_id: int
    state: str
    at: datetime.datetime
    changes: dict[str, Any] = field(default_factory=dict)

    def apply_to(self, job: Any) -> None:
        """Set the outcome on an in-memory job, as the database row would read after the ack."""
        job.state = self.state
        for name, value in self.changes.items():
            setattr(job, name, value)
        if self.state == "completed":
            job.completed_at = self.at
