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


class ImmediateUniqueWorker(Worker):
    """Unique for ever on args, queue and worker (Oban's defaults otherwise)."""

    unique = {"period": "infinity"}

    def perform(self, job):
        return None


class ArgsOnlyUniqueA(Worker):
    """Unique on args and queue only: collides with ArgsOnlyUniqueB on the same args."""

    unique = {"period": "infinity", "fields": ["args", "queue"]}

    def perform(self, job):
        return None


class ArgsOnlyUniqueB(Worker):
    unique = {"period": "infinity", "fields": ["args", "queue"]}

    def perform(self, job):
        return None


class ScheduledTimestampWorker(Worker):
    """Unique for a minute measured on scheduled_at instead of inserted_at."""

    unique = {"period": 60, "timestamp": "scheduled_at"}

    def perform(self, job):
        return None


class ReplaceAnyStateWorker(Worker):
    """Replace as a plain list: the fields are replaced whatever the existing job's state."""

    unique = {"period": "infinity", "fields": ["worker", "args"], "keys": ["id"]}
    replace = ["args", "tags", "max_attempts", "queue"]

    def perform(self, job):
        return None


class OptionsWorker(Worker):
    """Every class option set, to check inheritance and per-job overrides."""

    queue = "reports"
    priority = 7
    max_attempts = 5
    tags = ["nightly"]

    def perform(self, job):
        return None
