"""What ``perform`` may return besides a value: run again later, or stop for good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .durations import Duration, to_seconds


@dataclass(frozen=True)
class Snooze:
    """Run the job again after ``seconds``; not counted as a failure."""

    seconds: float

    def __init__(self, seconds: Duration) -> None:
        object.__setattr__(self, "seconds", to_seconds(seconds, "Snooze"))


@dataclass(frozen=True)
class Cancel:
    """Stop the job for good in state ``cancelled``, recording ``reason``."""

    reason: Any = None


@dataclass(frozen=True)
class Discard:
    """Stop the job for good in state ``discarded``, recording ``reason``."""

    reason: Any = None


#: The results that do not complete a job.
CONTROL_RESULTS = (Snooze, Cancel, Discard)
