"""Stager: scheduled and retryable jobs whose time has come become available."""

from __future__ import annotations

from .base import Plugin


class Stager(Plugin):
    name = "stager"
    interval = 0.5

    def __init__(self, limit: int = 10_000) -> None:
        super().__init__()
        self.limit = limit

    def run(self, node, engine, now):
        queues = engine.stage_jobs(now, self.limit)
        # Wake the producers of those queues on every node (NOTIFY), or in this process.
        engine.notify(queues)
        return {"queues": queues}
