"""Lifeline: rescues jobs left ``executing`` by nodes that stopped heartbeating for the
node's ``rescue_after`` seconds."""

from __future__ import annotations

import datetime

from .base import Plugin


class Lifeline(Plugin):
    name = "lifeline"
    interval = 5.0

    def run(self, node, engine, now):
        dead_after = now - datetime.timedelta(seconds=node.rescue_after)
        result = engine.rescue_orphans(dead_after, now)
        engine.notify(result.pop("queues"))
        return result
