"""Lifeline: rescues jobs left ``executing`` by nodes that stopped heartbeating."""

from __future__ import annotations

import datetime

from .base import Plugin


class Lifeline(Plugin):
    name = "lifeline"
    interval = 5.0

    def __init__(self, rescue_after: float) -> None:
        #: Seconds without a producer heartbeat after which its jobs are orphans.
        self.rescue_after = rescue_after

    def run(self, engine, now):
        dead_after = now - datetime.timedelta(seconds=self.rescue_after)
        result = engine.rescue_orphans(dead_after, now)
        engine.notify(result.pop("queues"))
        return result
