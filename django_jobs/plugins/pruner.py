"""Pruner: deletes finished jobs older than the node's ``PRUNER["max_age"]``, one bounded
chunk (``PRUNER["limit"]`` rows) per run."""

from __future__ import annotations

import datetime

from django.db.models.functions import Coalesce

from ..engines import Engine
from ..models import FINISHED_STATES
from ..transitions import KnownJob, transition
from .base import Plugin


def prune_jobs(engine: Engine, before, limit: int) -> int:
    """Delete up to ``limit`` finished jobs that finished before ``before``; return how many.

    Selects through the prune index (the same COALESCE expression over the finished states)
    and deletes by id, so each pass is one bounded chunk.
    """
    # Oldest first, in the prune index's own order (not the model's "-id").
    rows = list(engine.jobs.alias(finished=Coalesce("completed_at", "cancelled_at",
                                                    "discarded_at"))
                .filter(state__in=FINISHED_STATES, finished__lt=before)
                .order_by("finished").values_list("id", "worker", "queue", "meta",
                                                  "state", "attempt")[:limit])
    if not rows:
        return 0
    return transition([row[0] for row in rows], None, only_from=FINISHED_STATES,
                      known={row[0]: KnownJob(*row[1:]) for row in rows}, using=engine.alias)


class Pruner(Plugin):
    name = "pruner"
    interval = 30.0

    def run(self, node, engine, now):
        before = now - datetime.timedelta(seconds=node.pruner["max_age"])
        return {"deleted": prune_jobs(engine, before, node.pruner["limit"])}
