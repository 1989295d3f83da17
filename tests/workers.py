"""Fixture workers for the test suite."""

from django_jobs import Worker


class NoopWorker(Worker):
    def perform(self, job):
        return None


class MailerWorker(Worker):
    queue = "mailers"
    max_attempts = 3
    priority = 2
    tags = ["email", " email ", "outbound"]

    def perform(self, job):
        return job.args.get("email")


class UniqueWorker(Worker):
    unique = {"period": 60}

    def perform(self, job):
        return None


class UniqueByEmailWorker(Worker):
    unique = {"period": "infinity", "keys": ["email"], "states": "incomplete"}
    replace = {"scheduled": ["scheduled_at", "args"], "available": ["priority"]}

    def perform(self, job):
        return None


class NotAWorker:
    pass
