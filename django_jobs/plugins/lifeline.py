"""Lifeline: rescues jobs left ``executing`` by nodes that stopped heartbeating.

Option: ``DJANGO_JOBS["RESCUE_AFTER"]`` (``runjobs --rescue-after`` overrides it), the seconds
a node may go without a heartbeat before its jobs are rescued. The decision (which executing
jobs are orphans, and whether each goes back to ``available`` or is ``discarded``) is
:func:`rescue_orphans`'s; the writes go through the door.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..conf import SETTING_NAME, jobs_settings
from ..engines import Engine
from ..models import Job, JobState, Producer, error_entry
from ..transitions import transition
from .base import Plugin, Problem, problem_of, seconds_option

__all__ = ["MIN_RESCUE_AFTER", "Lifeline", "rescue_orphans"]

#: The shortest RESCUE_AFTER: nodes heartbeat every second, and a live node must never look
#: dead.
MIN_RESCUE_AFTER = 3.0
RESCUE_NOTE = "Rescued: the node running this job stopped heartbeating."


def rescue_orphans(dead_after: datetime.datetime, now: datetime.datetime, *,
                   using: str | None = None) -> dict[str, Any]:
    """Put back jobs left ``executing`` by producers that stopped heartbeating.

    A job is orphaned when its producer (``attempted_by[1]``) has no row, or a row whose
    heartbeat is older than ``dead_after``. Jobs with attempts left go back to ``available``;
    the others are ``discarded``; both get an error entry saying so. Jobs of live producers
    are never touched, however long they run. Returns counts ``rescued`` and ``discarded``,
    the ``queues`` that got jobs back, and ``producers_removed`` (rows of dead producers).
    """
    jobs = Job.objects.using(using)
    producers = Producer.objects.using(using)
    # Executing jobs first, producers second: a producer's row is written before it claims
    # anything, so a job read here belongs to a producer the next read can see. (The other
    # order would miss a node started between the reads and rescue its running jobs.)
    # Executing jobs number at most the sum of all queue limits (executing index), so the
    # producer test is done here, the same way on every database.
    executing = list(jobs.filter(state=JobState.EXECUTING).only(
        "id", "state", "worker", "queue", "meta", "attempt", "max_attempts", "errors",
        "attempted_by"))
    live = {str(u) for u in producers.filter(heartbeat_at__gte=dead_after)
            .values_list("uuid", flat=True)}
    orphans = [job for job in executing
               if not (isinstance(job.attempted_by, list) and len(job.attempted_by) > 1
                       and job.attempted_by[1] in live)]
    back: dict[int, dict] = {}
    out: dict[int, dict] = {}
    for job in orphans:
        errors = [*job.errors, error_entry(job.attempt, now, RESCUE_NOTE)]
        if job.attempt >= job.max_attempts:
            out[job.pk] = {"errors": errors, "discarded_at": now}
        else:
            back[job.pk] = {"errors": errors}
    known = {job.pk: job for job in orphans}
    rescued = transition(None, JobState.AVAILABLE, only_from=(JobState.EXECUTING,), per_job=back,
                         held=known, using=using)
    discarded = transition(None, JobState.DISCARDED, only_from=(JobState.EXECUTING,),
                           per_job=out, held=known, using=using)
    # Rows of producers that stopped heartbeating are gone for good (a live node that was
    # only cut off writes its rows again on its next heartbeat).
    stale = producers.filter(heartbeat_at__lt=dead_after).delete()[0]
    return {"rescued": rescued, "discarded": discarded,
            "queues": sorted({known[pk].queue for pk in back}), "producers_removed": stale}


class Lifeline(Plugin):
    """Runs :func:`rescue_orphans` on the leader every 5 seconds."""

    name = "lifeline"
    interval = 5.0

    def __init__(self, rescue_after: float) -> None:
        super().__init__()
        #: Seconds without a heartbeat after which a node's jobs are rescued.
        self.rescue_after = seconds_option("RESCUE_AFTER", rescue_after,
                                           minimum=MIN_RESCUE_AFTER)

    @classmethod
    def _rescue_after(cls, overrides: dict[str, Any]) -> Any:
        return overrides.get("rescue_after", jobs_settings.RESCUE_AFTER)

    @classmethod
    def from_settings(cls, **overrides: Any) -> Lifeline:
        cls.check_options(**overrides)
        return cls(cls._rescue_after(overrides))

    @classmethod
    def problems(cls, **overrides: Any) -> list[Problem]:
        where = f"{SETTING_NAME}['RESCUE_AFTER']"
        problem = problem_of(seconds_option, where, cls._rescue_after(overrides),
                             minimum=MIN_RESCUE_AFTER)
        return [problem] if problem else []

    def run(self, node, engine: Engine, now: datetime.datetime) -> dict[str, Any]:
        result = rescue_orphans(now - datetime.timedelta(seconds=self.rescue_after), now,
                                using=engine.alias)
        del result["queues"]  # the door woke them
        return result
