"""The fixture worker of the contract suite.

The suite inserts, fetches and moves jobs but never performs them: its jobs only need a worker
that imports (a job names its worker by dotted path) and whose options are the defaults.
"""

from __future__ import annotations

from ..worker import Worker


class ContractWorker(Worker):
    """Does nothing; the contract's jobs are never performed."""

    def perform(self, job) -> None:
        return None
