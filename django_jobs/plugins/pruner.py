"""Pruner: deletes finished jobs older than ``max_age``, one bounded chunk per run."""

from __future__ import annotations

import datetime

from .base import Plugin


class Pruner(Plugin):
    name = "pruner"
    interval = 30.0

    def __init__(self, max_age: float, limit: int) -> None:
        self.max_age = max_age
        self.limit = limit

    def run(self, engine, now):
        before = now - datetime.timedelta(seconds=self.max_age)
        return {"deleted": engine.prune_jobs(before, self.limit)}
