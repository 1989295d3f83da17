"""Workers of tests/test_bad_rows.py (module level: runjobs children import them). Each reads
a part of its row that a bad row breaks: the test writes such rows straight into the table."""

from django_jobs import ChunkWorker, Snooze, Worker
from django_jobs.pro import structured as s

QUEUE = "rows"


class Snoozer(Worker):
    """Snoozes its first attempt (a snooze counts in meta)."""

    queue = QUEUE

    def perform(self, job):
        return Snooze(60)


class Recorder(Worker):
    """Records its result (in meta)."""

    queue = QUEUE
    recorded = True

    def perform(self, job):
        return {"sent": 1}


class Failer(Worker):
    """Fails every attempt (its error goes into the job's errors)."""

    queue = QUEUE

    def perform(self, job):
        raise RuntimeError("gateway down")


class Typed(Worker):
    """Structured args: cast before perform."""

    queue = QUEUE

    class Args:
        to = s.Str(required=True)

    def perform(self, job):
        return None


class Plain(Worker):
    """Needs nothing of its row."""

    queue = QUEUE

    def perform(self, job):
        return None


class ByAccount(ChunkWorker):
    """Chunks by an args key: the leader's args must be an object."""

    queue = QUEUE
    size = 3
    gather_timeout = 0
    by = {"args": "account"}

    def process(self, jobs):
        return None
