"""Workers of the fuzz and poison-row tests (module level, so ``runjobs`` children can import
them)."""

from __future__ import annotations

from django_jobs import Worker
from django_jobs.pro import structured as s

#: The queue of the fuzz workers.
QUEUE = "fuzz"
#: The args each EchoWorker attempt saw, in this process (children keep their own).
SEEN: list = []


class EchoWorker(Worker):
    """Completes, remembering the args and meta it was given."""

    queue = QUEUE

    def perform(self, job):
        SEEN.append((job.args, job.meta))


class Line:
    sku = s.Str(required=True)
    quantity = s.Int(default=1)


class TypedWorker(Worker):
    """Structured args of most field types."""

    queue = QUEUE

    class Args:
        id = s.ID(required=True)
        name = s.Str()
        ratio = s.Float()
        active = s.Bool()
        extra = s.Dict()
        mode = s.Enum(["on", "off"])
        ref = s.UUID()
        at = s.DateTime()
        day = s.Date()
        amount = s.Decimal()
        tags = s.List(s.Str())
        line = s.One(Line)
        lines = s.Many(Line)
        blob = s.Term()

    def perform(self, job):
        SEEN.append((job.args.to_dict(), job.meta))
