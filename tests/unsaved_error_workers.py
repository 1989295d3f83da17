"""Workers of tests/test_unsaved_error.py (module level: runjobs children import them)."""

import sys

from django_jobs import Worker

#: What backoff and the hooks saw, in this process.
SEEN: list[tuple] = []


class RateLimited(Exception):
    """An error whose retry wants a long wait."""


class Flaky(Worker):
    """Raises ``args["raise"]`` (a class name), or completes."""

    queue = "unsaved"

    def perform(self, job):
        name = job.args.get("raise")
        if name == "SystemExit":
            sys.exit(1)
        if name:
            raise {"RateLimited": RateLimited, "ValueError": ValueError}[name]("failing")

    def backoff(self, job):
        SEEN.append(("backoff", type(job.unsaved_error).__name__))
        return 600 if isinstance(job.unsaved_error, RateLimited) else 5

    def after_process(self, state, job, result):
        error = job.unsaved_error
        SEEN.append(("after_process", state, None if error is None else type(error).__name__))
