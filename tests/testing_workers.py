"""Fixture workers, a view and URLs for the testing-helper tests (tests/test_testing*.py and
tests/pytest_project/).

Workers live at module level so that they import by dotted path
(``tests.testing_workers.RecordWorker``). What they observe goes to :data:`performed`, which
the tests clear in ``setUp``.
"""

from __future__ import annotations

import asyncio
import threading

from django.http import HttpResponse
from django.urls import path

from django_jobs import Cancel, Discard, Snooze, Worker


class Performed:
    """Jobs performed by the fixture workers, in the order they ran (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, dict]] = []
        self.threads: list[int] = []

    def add(self, job) -> None:
        with self.lock:
            self.items.append((job.worker.rsplit(".", 1)[-1], dict(job.args)))
            self.threads.append(threading.get_ident())

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.threads.clear()

    def args(self) -> list[dict]:
        with self.lock:
            return [args for _, args in self.items]

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.items]


performed = Performed()


class RecordWorker(Worker):
    """Records its args and returns ``args["value"]`` (None when absent)."""

    queue = "testing"

    def perform(self, job):
        performed.add(job)
        return job.args.get("value")


class OtherWorker(Worker):
    queue = "testing"

    def perform(self, job):
        performed.add(job)


class MailerWorker(Worker):
    """The worker of the docs' examples: a welcome mail."""

    queue = "mailers"
    max_attempts = 3
    tags = ["mail"]

    def perform(self, job):
        performed.add(job)
        return {"sent_to": job.args["email"]}


class AsyncRecordWorker(Worker):
    queue = "testing"

    async def perform(self, job):
        await asyncio.sleep(0)
        performed.add(job)
        return {"async": job.args.get("value")}


class AsyncFailWorker(Worker):
    queue = "testing"

    async def perform(self, job):
        await asyncio.sleep(0)
        raise KeyError("async boom")


class FailWorker(Worker):
    queue = "testing"

    def perform(self, job):
        performed.add(job)
        raise ValueError(f"boom {job.args.get('n', '')}".strip())


class AttemptWorker(Worker):
    """Fails unless ``args["ok"]``; records the attempt ``perform`` and ``backoff`` saw."""

    queue = "testing"
    max_attempts = 3
    #: (method, job.attempt) in the order they ran.
    seen: list = []

    def perform(self, job):
        AttemptWorker.seen.append(("perform", job.attempt))
        if job.args.get("ok"):
            return job.attempt
        raise ValueError(f"attempt {job.attempt} failed")

    def backoff(self, job):
        AttemptWorker.seen.append(("backoff", job.attempt))
        return 10 * job.attempt


class SnoozeWorker(Worker):
    queue = "testing"

    def perform(self, job):
        performed.add(job)
        return Snooze(60)


class CancelWorker(Worker):
    queue = "testing"

    def perform(self, job):
        performed.add(job)
        return Cancel("no longer wanted")


class DiscardWorker(Worker):
    queue = "testing"

    def perform(self, job):
        performed.add(job)
        return Discard("bad input")


class ReturnsClassWorker(Worker):
    """A classic slip: ``return Snooze`` instead of ``return Snooze(30)``."""

    queue = "testing"

    def perform(self, job):
        return Snooze


async def _later():
    return 1


class ReturnsCoroutineWorker(Worker):
    """A sync ``perform`` that returns a coroutine (a missing ``await`` or ``async``)."""

    queue = "testing"

    def perform(self, job):
        return _later()


class ReturnsGeneratorWorker(Worker):
    queue = "testing"

    def perform(self, job):
        return (n for n in range(3))


class ArgsTypesWorker(Worker):
    """Returns the Python types of its args' values, to show what perform receives."""

    queue = "testing"

    def perform(self, job):
        return {key: type(value).__name__ for key, value in job.args.items()}


class JobEchoWorker(Worker):
    """Returns what it saw of the job: attempt, state, queue, priority, meta, tags."""

    queue = "testing"

    def perform(self, job):
        return {"attempt": job.attempt, "state": job.state, "queue": job.queue,
                "priority": job.priority, "meta": job.meta, "tags": job.tags,
                "pk": job.pk, "max_attempts": job.max_attempts}


class ParentWorker(Worker):
    """Enqueues ``args["children"]`` RecordWorker jobs, on ``args.get("queue", "testing")``,
    with ``args.get("child_priority", 0)``."""

    queue = "testing"

    def perform(self, job):
        performed.add(job)
        for n in range(job.args.get("children", 1)):
            RecordWorker.enqueue({"child_of": job.args.get("n"), "n": n},
                                 queue=job.args.get("queue", "testing"),
                                 priority=job.args.get("child_priority", 0))


class ChainWorker(Worker):
    """Enqueues itself with ``depth - 1`` until depth reaches 0."""

    queue = "testing"

    def perform(self, job):
        performed.add(job)
        depth = job.args["depth"]
        if depth > 0:
            ChainWorker.enqueue({"depth": depth - 1})


class UniqueWorker(Worker):
    queue = "testing"
    unique = {"period": 60}

    def perform(self, job):
        performed.add(job)


class NotAWorker:
    """Importable, but not a Worker."""

    def perform(self, job):  # pragma: no cover - never called
        return None


# -- a view and its URLs, for "assert what a request enqueued" (ROOT_URLCONF = this module) --

def signup(request):
    email = request.POST["email"]
    MailerWorker.enqueue({"email": email, "source": "signup"}, meta={"ip": "127.0.0.1"},
                         priority=2)
    return HttpResponse("ok", status=201)


urlpatterns = [path("signup/", signup)]
