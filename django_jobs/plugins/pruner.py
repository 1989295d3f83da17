"""Pruner: deletes finished jobs older than the node's ``PRUNER["max_age"]``, one bounded
chunk (``PRUNER["limit"]`` rows) per run."""

from __future__ import annotations

import datetime

from .base import Plugin


class Pruner(Plugin):
    name = "pruner"
    interval = 30.0

    def run(self, node, engine, now):
        before = now - datetime.timedelta(seconds=node.pruner["max_age"])
        return {"deleted": engine.prune_jobs(before, node.pruner["limit"])}
