"""Lifeline: rescues jobs left ``executing`` by nodes that stopped heartbeating for the
node's ``rescue_after`` seconds."""

from __future__ import annotations

import datetime

from ..engines import Engine
from ..models import JobState, Producer, error_entry
from ..transitions import transition
from .base import Plugin


def rescue_orphans(engine: Engine, dead_after, now) -> dict:
    """Put back jobs left ``executing`` by producers that stopped heartbeating.

    A job is orphaned when its producer (``attempted_by[1]``) has no row, or a row whose
    heartbeat is older than ``dead_after``. Jobs with attempts left go back to ``available``
    (the door wakes their queues); the others are ``discarded``. Jobs of live producers are
    never touched, however long they run. Returns counts ``rescued``, ``discarded`` and
    ``producers_removed``, and the ``queues`` that got jobs back.
    """
    # Executing jobs first, producers second: a producer's row is written before it claims
    # anything, so a job read here belongs to a producer the next read can see. (The other
    # order would miss a node started between the reads and rescue its running jobs.)
    # Executing jobs number at most the sum of all queue limits (executing index), so the
    # producer test is done here, the same way on every engine.
    executing = list(engine.jobs.filter(state=JobState.EXECUTING).only(
        "id", "state", "worker", "queue", "meta", "attempt", "max_attempts", "errors",
        "attempted_by"))
    live = {str(u) for u in Producer.objects.using(engine.alias)
            .filter(heartbeat_at__gte=dead_after).values_list("uuid", flat=True)}
    orphans = [job for job in executing
               if not (isinstance(job.attempted_by, list) and len(job.attempted_by) > 1
                       and job.attempted_by[1] in live)]
    by_state: dict[str, dict[int, dict]] = {JobState.AVAILABLE: {}, JobState.DISCARDED: {}}
    for job in orphans:
        error = error_entry(job.attempt, now,
                            "Rescued: the node running this job stopped heartbeating.")
        errors = [*job.errors, error] if isinstance(job.errors, list) else [error]
        if job.attempt >= job.max_attempts:
            by_state[JobState.DISCARDED][job.pk] = {"errors": errors, "discarded_at": now}
        else:
            by_state[JobState.AVAILABLE][job.pk] = {"errors": errors}
    known = {job.pk: job for job in orphans}
    rescued = transition(None, JobState.AVAILABLE, only_from=(JobState.EXECUTING,),
                         each=by_state[JobState.AVAILABLE], known=known, using=engine.alias)
    discarded = transition(None, JobState.DISCARDED, only_from=(JobState.EXECUTING,),
                           each=by_state[JobState.DISCARDED], known=known, using=engine.alias)
    # Rows of producers that stopped heartbeating are gone for good (a live node that was only
    # cut off writes its rows again on its next heartbeat).
    stale = Producer.objects.using(engine.alias).filter(heartbeat_at__lt=dead_after).delete()[0]
    queues = sorted({known[pk].queue for pk in by_state[JobState.AVAILABLE]})
    return {"rescued": rescued, "discarded": discarded, "queues": queues,
            "producers_removed": stale}


class Lifeline(Plugin):
    name = "lifeline"
    interval = 5.0

    def run(self, node, engine, now):
        dead_after = now - datetime.timedelta(seconds=node.rescue_after)
        result = rescue_orphans(engine, dead_after, now)
        del result["queues"]  # woken by the door; the plugin_ran result counts
        return result
