"""Deadlines: a job that must not run late is cancelled instead.

::

    class FlashSaleWorker(Worker):
        deadline = (1, "hour")                      # or 3600, a timedelta,
                                                    # or {"in": 3600, "force": True}

    FlashSaleWorker.enqueue(args, schedule_in=3600, deadline=(30, "minutes"))

The deadline is fixed when the job is built, counted from its scheduled time (a job scheduled
in 1 hour with a 1 hour deadline expires in 2 hours), and stored in ``meta["deadline_at"]``:
retries and snoozes do not move it. A job fetched after its deadline is cancelled without
running, the reason recorded in its errors. With ``force``, a job still running when its
deadline passes is stopped and cancelled, with the interruption timeouts use (Python code stops
at once; a call blocked in C is stopped when it returns). ``new(args, deadline=...)`` overrides
the worker's deadline, and is only allowed for workers that declare one (as in Oban Pro).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ..durations import to_seconds
from ..exceptions import ConfigurationError, InvalidJobError
from ..features import Attempt, Feature
from ..results import Cancel


@dataclass(frozen=True)
class DeadlineSpec:
    seconds: float
    force: bool = False


def parse_deadline(value: Any, where: str = "deadline") -> DeadlineSpec:
    """Seconds, a timedelta, ``(n, unit)``, or ``{"in": one of those, "force": bool}``."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"in", "force"}
        if unknown or "in" not in value:
            raise InvalidJobError(f"{where} as a dict takes 'in' (a duration) and 'force', "
                                  f"not {sorted(value)}")
        force = value.get("force", False)
        if not isinstance(force, bool):
            raise InvalidJobError(f"{where} force must be True or False, not {force!r}")
        return DeadlineSpec(to_seconds(value["in"], where), force)
    return DeadlineSpec(to_seconds(value, where))


class Deadline(Feature):
    """``deadline = ...``: cancel a job that would start, or (``force``) still run, late."""

    name = "deadline"
    options = ("deadline",)

    def setup(self, worker: type) -> DeadlineSpec | None:
        value = getattr(worker, "deadline", None)
        if value is None:
            return None
        try:
            return parse_deadline(value)
        except InvalidJobError as exc:
            raise ConfigurationError(str(exc)) from None

    def build(self, job, options: Mapping[str, Any], config: DeadlineSpec) -> None:
        spec = config
        if "deadline" in options:
            given = options["deadline"]
            spec = parse_deadline(given)
            if not isinstance(given, Mapping):  # a plain duration keeps the worker's force
                spec = DeadlineSpec(spec.seconds, config.force)
        at = job.scheduled_at + datetime.timedelta(seconds=spec.seconds)
        job.meta["deadline_at"] = at.isoformat()
        if spec.force:
            job.meta["deadline_force"] = True

    def before(self, attempt: Attempt, config: DeadlineSpec) -> Any:
        meta = attempt.job.meta if isinstance(attempt.job.meta, Mapping) else {}
        if "deadline_at" not in meta:
            return None  # inserted before the worker had a deadline
        at = datetime.datetime.fromisoformat(meta["deadline_at"])
        left = (at - timezone.now()).total_seconds()
        if left <= 0:
            return Cancel(f"deadline passed at {at.isoformat()} before the job started")
        if meta.get("deadline_force"):
            attempt.cancel_when(time.monotonic() + left,
                                f"Cancelled: deadline passed at {at.isoformat()} while the "
                                f"job was executing")
        return None

