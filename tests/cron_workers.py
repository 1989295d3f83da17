"""Fixture workers for the cron tests (tests/test_cron_*.py).

Module level, so that cron entries can name them by dotted path
(``tests.cron_workers.CronWorker``).
"""

from django_jobs import Worker


class CronWorker(Worker):
    queue = "cron"

    def perform(self, job):
        return job.meta.get("cron_slot")


class ReportWorker(Worker):
    """A worker with options of its own, which a cron entry's options override."""

    queue = "reports"
    priority = 3
    max_attempts = 7
    tags = ["report"]

    def perform(self, job):
        return None
