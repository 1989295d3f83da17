"""Workers, hooks and a job feature for tests/test_hooks.py, tests/test_aliases.py and
tests/test_features.py.

Everything here lives at module level, so that a ``runjobs`` child process imports it by dotted
path when it resolves a job's worker. What the hooks and workers see is recorded twice:

* in this process, in :data:`calls` (the tests clear it in ``setUp``), as tuples such as
  ``("implicit", "after_process", "complete", job_id, args, result)``;
* for a job whose args hold ``"mark": true``, also as a :class:`Marker` job inserted into the
  queue ``marks``, which no test node runs: a ``runjobs`` child's hooks leave rows the test
  reads back (``marks()``), without any table of their own.

The behaviour of :class:`HookedWorker` and its hooks is chosen by the job's args (``"new"``,
``"before"``, ``"do"``, ``"after"``, ``"listed_before"``, ``"trail"``), so that one worker
shows every outcome.

:class:`PerformJobRuns`, :class:`InlineRuns` and :class:`DrainRuns` are the three ways the
tests run a job in the test process; a test mixes one in and reads what happened as a
:class:`Ran`.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from django_jobs import Cancel, Discard, Feature, InvalidJobError, Snooze, Worker
from django_jobs.features import register_feature
from django_jobs.insertion import insert
from django_jobs.models import Job
from django_jobs.testing import drain_queue, perform_job, with_testing_mode

#: Queue of the hooked workers; the queue that marker jobs go to (never run by a test node).
QUEUE = "hooks"
ALIAS_QUEUE = "aliases"
FEATURE_QUEUE = "features"
MARKS = "marks"
#: Seconds before a failed attempt is retried, and a snooze: long enough that a retryable or
#: snoozed job stays that way while a test looks at it.
LATER = 3600


class Calls:
    """What hooks and workers saw in this process, in order (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple] = []

    def add(self, entry: tuple) -> None:
        with self.lock:
            self.items.append(entry)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()

    def all(self) -> list[tuple]:
        with self.lock:
            return list(self.items)

    def of(self, method: str) -> list[tuple]:
        """Entries of one hook method (or ``"perform"``), each without the method name."""
        return [(who, *rest) for who, what, *rest in self.all() if what == method]

    def who(self, method: str) -> list[str]:
        """Which hooks ran ``method``, in order."""
        return [who for who, what, *_ in self.all() if what == method]


calls = Calls()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return repr(value)


def note(job, who: str, what: str, *rest: Any) -> None:
    """Record ``(who, what, *rest)`` here; and as a marker job when the job asks for it."""
    calls.add((who, what, *rest))
    if job is not None and isinstance(job.args, dict) and job.args.get("mark"):
        Marker.enqueue({"who": who, "what": what, "job": job.pk,
                        "rest": [_jsonable(value) for value in rest]}, queue=MARKS)


def marks(job_id: int, what: str) -> list[tuple]:
    """What the hooks and workers of a ``runjobs`` child recorded for job ``job_id`` as marker
    rows, for one hook method (or ``"perform"``): ``(who, *rest)`` tuples, in order, with the
    values as JSON gave them back."""
    rows = Job.objects.filter(queue=MARKS).order_by("id").values_list("args", flat=True)
    return [(row["who"], *row["rest"]) for row in rows
            if row["job"] == job_id and row["what"] == what]


class Marker(Worker):
    """A side effect of a hook, as a row: ``args`` say which hook saw what. Never run."""

    queue = MARKS

    def perform(self, job):
        return None


# -- hook classes -------------------------------------------------------------------------------


class ListedHook:
    """Listed in :attr:`HookedWorker.hooks` (explicit): all three methods."""

    def before_new(self, args, opts):
        note(None, "listed", "before_new")
        if "trail" in args:
            args = {**args, "trail": [*args["trail"], "listed"]}
        return args, opts

    def before_process(self, job):
        note(job, "listed", "before_process")
        if job.args.get("listed_before") == "snooze":
            return Snooze(LATER)
        return None

    def after_process(self, state, job, result):
        note(job, "listed", "after_process", state, job.pk, dict(job.args),
             _jsonable(result))


class PartialHook:
    """Listed second: a hook class may define only some of the methods."""

    def after_process(self, state, job, result):
        note(job, "partial", "after_process", state, job.pk, dict(job.args),
             _jsonable(result))


class GlobalHook:
    """Attached to every worker by the tests (``attach_hook``), never at import."""

    def before_new(self, args, opts):
        note(None, "global", "before_new")
        if "trail" in args:
            args = {**args, "trail": [*args["trail"], "global"]}
        return args, opts

    def before_process(self, job):
        note(job, "global", "before_process")
        return None

    def after_process(self, state, job, result):
        note(job, "global", "after_process", state, job.pk, dict(job.args),
             _jsonable(result))


class FailingAfterHook:
    """An ``after_process`` that always raises (attached by a test)."""

    def after_process(self, state, job, result):
        note(job, "failing", "after_process", state, job.pk, dict(job.args),
             _jsonable(result))
        raise RuntimeError("failing hook after_process")


class NoHookMethods:
    """Not a hook: none of the three methods."""

    def perform(self, job):
        return None


# -- workers ------------------------------------------------------------------------------------


def perform_as_asked(job):
    """Record the job as perform sees it (args, priority, meta), then do what ``args["do"]``
    says: ``return`` (the default: return ``args["value"]``), ``raise``, ``cancel``,
    ``discard`` or ``snooze``."""
    note(job, "worker", "perform", dict(job.args), job.priority, dict(job.meta))
    mode = job.args.get("do", "return")
    if mode == "raise":
        raise ValueError("perform failed")
    if mode == "cancel":
        return Cancel("perform cancelled")
    if mode == "discard":
        return Discard("perform discarded")
    if mode == "snooze":
        return Snooze(LATER)
    return job.args.get("value")


class HookedWorker(Worker):
    """Implicit hooks (its own methods) and explicit ones (``hooks``); args choose what each
    does:

    * ``new``: ``transform`` (args get ``stamped``, priority 7, meta ``tenant``), ``refuse``
      (raises ValueError), ``invalid`` (raises InvalidJobError), ``validation`` (raises
      ValidationError), ``bad_return`` (returns the args alone);
    * ``before``: ``cancel``, ``discard``, ``snooze`` (short-circuit), ``raise`` (raises),
      ``return_error`` (returns an exception), ``replace`` (returns another job), ``mutate``
      (changes the job in place), ``bad`` (returns 42);
    * ``do`` (perform): ``return`` (the default: returns ``args["value"]``), ``raise``,
      ``cancel``, ``discard``, ``snooze``;
    * ``after``: ``raise`` makes the worker's own ``after_process`` raise.
    """

    queue = QUEUE
    hooks = [ListedHook, PartialHook]

    def before_new(self, args, opts):
        note(None, "implicit", "before_new")
        mode = args.get("new")
        if "trail" in args:
            args = {**args, "trail": [*args["trail"], "implicit"]}
        if mode == "transform":
            args = {**args, "stamped": True}
            opts = {**opts, "priority": 7, "meta": {**opts.get("meta", {}), "tenant": 42}}
        elif mode == "refuse":
            raise ValueError("no jobs today")
        elif mode == "invalid":
            raise InvalidJobError("invalid as given")
        elif mode == "validation":
            raise ValidationError("not valid here", code="invalid")
        elif mode == "bad_return":
            return args
        return args, opts

    def before_process(self, job):
        note(job, "implicit", "before_process")
        mode = job.args.get("before")
        if mode == "cancel":
            return Cancel("before cancelled")
        if mode == "discard":
            return Discard("before discarded")
        if mode == "snooze":
            return Snooze(LATER)
        if mode == "raise":
            raise RuntimeError("before_process raised")
        if mode == "return_error":
            return LookupError("before_process returned an error")
        if mode == "replace":
            replaced = copy.copy(job)
            replaced.args = {**job.args, "replaced": True}
            return replaced
        if mode == "mutate":
            job.args["mutated"] = True
        if mode == "bad":
            return 42
        return None

    def perform(self, job):
        return perform_as_asked(job)

    def after_process(self, state, job, result):
        note(job, "implicit", "after_process", state, job.pk, dict(job.args),
             _jsonable(result))
        if job.args.get("after") == "raise":
            raise RuntimeError("worker after_process failed")

    def backoff(self, job):
        return LATER


class PlainWorker(Worker):
    """No hooks of its own: only global hooks reach it."""

    queue = QUEUE

    def perform(self, job):
        return perform_as_asked(job)


class ImplicitOnlyWorker(Worker):
    """Only an implicit ``after_process``; runs on the instance that performed the job."""

    queue = QUEUE

    def perform(self, job):
        self.performed_by = id(self)
        return "done"

    def after_process(self, state, job, result):
        note(job, "implicit", "after_process", state, job.pk, dict(job.args), result,
             getattr(self, "performed_by", None) == id(self))


# -- aliases --------------------------------------------------------------------------------------

#: The paths :class:`NewName` was known by: in this module (a class renamed in place), and in a
#: module that no longer exists (a class moved elsewhere).
OLD_NAME = "tests.feature_workers.OldName"
MOVED_NAME = "tests.feature_workers_gone.OlderName"


class NewName(Worker):
    """Renamed from ``OldName`` (and moved from another module): jobs stored under either old
    path run here."""

    queue = ALIAS_QUEUE
    aliases = [OLD_NAME, MOVED_NAME]

    def perform(self, job):
        note(job, "NewName", "perform", job.worker, type(self).__name__)
        return {"ran_on": type(self).__name__, "stored_as": job.worker}


class NewNameChild(NewName):
    """A subclass: the aliases of :class:`NewName` are not its own."""

    def perform(self, job):
        note(job, "NewNameChild", "perform", job.worker, type(self).__name__)
        return {"ran_on": type(self).__name__, "stored_as": job.worker}


# -- a job feature seen by runjobs children ------------------------------------------------------


class MetaStamp(Feature):
    """Adds ``{"stamped": <attempt state>, "stamped_by": <pid>}`` to the meta written with the
    outcome of jobs of workers that set ``stamp_meta = True``.

    The tests register it for the duration of a test; a ``runjobs`` child (started with
    tests.subprocess_settings, see tests/processes.py) registers it when it imports this
    module, so that the child's pipeline holds it too.
    """

    name = "meta_stamp"

    def setup(self, worker):
        return True if worker.__dict__.get("stamp_meta") else None

    def after(self, attempt, config):
        attempt.write_meta(stamped=attempt.state, stamped_by=os.getpid())


META_STAMP = MetaStamp()
if os.environ.get("DJANGO_SETTINGS_MODULE") == "tests.subprocess_settings":
    register_feature(META_STAMP)


class FeatureWorker(Worker):
    """For the job-feature tests: ``args["do"]`` as for :class:`HookedWorker`."""

    queue = FEATURE_QUEUE
    stamp_meta = True

    def perform(self, job):
        return perform_as_asked(job)

    def backoff(self, job):
        return LATER


class OtherFeatureWorker(Worker):
    """A worker the test features do not apply to (their ``setup`` returns None for it)."""

    queue = FEATURE_QUEUE

    def perform(self, job):
        return perform_as_asked(job)


# -- three ways a test runs a job ------------------------------------------------------------------

#: A job's state, in the names hooks and features give the outcome of an attempt.
OUTCOME = {"completed": "complete", "cancelled": "cancel", "discarded": "discard",
           "retryable": "error", "scheduled": "snooze"}


@dataclass
class Ran:
    """What running one job gave, whichever way it ran."""

    #: The outcome, as hooks name it: complete, cancel, discard, error or snooze.
    state: str
    #: What perform returned (or the result a hook or feature short-circuited it with):
    #: perform_job and inline mode only.
    result: Any = None
    #: The last error recorded for the attempt ("" when none): an error entry's text, or for
    #: perform_job the exception it raised, or the reason of the Cancel/Discard it returned.
    error: str = ""
    #: inline: the job as it came back; drain_queue: the row read back after the drain.
    job: Any = None
    #: perform_job: the exception it raised.
    exc: BaseException | None = None


def _last_error(job) -> str:
    return job.errors[-1]["error"] if job.errors else ""


class PerformJobRuns:
    """Run jobs with ``perform_job`` (nothing written; exceptions propagate)."""

    via = "perform_job"
    writes = False

    def submit_job(self, worker, args=None, **options):
        """Build and run a job, letting every exception through."""
        if isinstance(worker, Job):
            return perform_job(worker)
        return perform_job(worker, args, **options)

    def run_job(self, worker, args=None, **options) -> Ran:
        max_attempts = (worker.max_attempts if isinstance(worker, Job)
                        else options.get("max_attempts", worker.max_attempts))
        try:
            result = self.submit_job(worker, args, **options)
        except Exception as exc:
            # perform_job runs attempt 1: a failure is retried unless that was the last one.
            return Ran("discard" if max_attempts <= 1 else "error", None,
                       f"{type(exc).__name__}: {exc}", None, exc)
        if isinstance(result, Cancel):
            return Ran("cancel", result, f"Cancelled: {result.reason}")
        if isinstance(result, Discard):
            return Ran("discard", result, f"Discarded: {result.reason}")
        if isinstance(result, Snooze):
            return Ran("snooze", result)
        return Ran("complete", result)


class InlineRuns:
    """Run jobs in inline mode (``with_testing_mode("inline")``): at insert, nothing written."""

    via = "inline"
    writes = False

    def submit_job(self, worker, args=None, **options):
        with with_testing_mode("inline"):
            if isinstance(worker, Job):
                return insert(worker)
            return worker.enqueue(args, **options)

    def run_job(self, worker, args=None, **options) -> Ran:
        job = self.submit_job(worker, args, **options)
        return Ran(OUTCOME[job.state], job.result, _last_error(job), job)


class DrainRuns:
    """Insert jobs in manual mode, then run them with ``drain_queue``, which claims and acks
    them through the engine as ``runjobs`` does."""

    via = "drain_queue"
    writes = True

    def submit_job(self, worker, args=None, **options):
        with with_testing_mode("manual"):
            job = insert(worker) if isinstance(worker, Job) else worker.enqueue(args, **options)
            counts = drain_queue(job.queue)
        ran = sum(counts.values())
        if ran != 1:
            raise AssertionError(f"drain_queue({job.queue!r}) ran {ran} jobs, not 1: {counts}")
        return Job.objects.get(pk=job.pk)

    def run_job(self, worker, args=None, **options) -> Ran:
        row = self.submit_job(worker, args, **options)
        return Ran(OUTCOME[row.state], None, _last_error(row), row)
