"""Testing helpers: assert what was enqueued, perform single jobs, drain queues, and modes.

For ``unittest``/Django tests, mix :class:`JobsTestMixin` into a test case (or use
:class:`JobsTestCase`); for pytest, the same helpers are plain functions here
(``assert_enqueued``, ``assert_not_enqueued``, ``all_enqueued``, ``perform_job``,
``drain_queue``, ``with_testing_mode``) and fixtures in :mod:`django_jobs.pytest_plugin`.

Helpers are public API: a failing assertion says what it looked for and lists what *was*
enqueued.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import difflib
import functools
import datetime
import inspect
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import models
from django.test import TestCase
from django.utils import timezone

from . import modes
from .build import new_job
from .registry import resolve_worker
from .engines import get_engine
from .execution.executor import execute
from .execution.inline import as_fetched
from .execution.interrupt import Running
from .exceptions import InvalidJobError
from .jsonutil import round_trip
from .models import Job, JobState
from .pro.chunk import perform_chunk
from .transitions import ack, transition
from .worker import Cancel, Discard, Snooze, Worker

__all__ = [
    "ANY", "JobsTestCase", "JobsTestMixin", "all_enqueued", "assert_enqueued",
    "assert_not_enqueued", "drain_queue", "perform_chunk", "perform_job", "testing_mode",
    "with_testing_mode",
]

#: States in which a job counts as enqueued (waiting to run).
ENQUEUED_STATES = (JobState.AVAILABLE, JobState.SCHEDULED, JobState.SUSPENDED)
#: Default tolerance when matching ``scheduled_at``.
TIME_DELTA = datetime.timedelta(seconds=1)
_POLL = 0.01


class _Any:
    """Matches any value in ``args``/``meta`` patterns: the key only has to be present."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()

# -- testing modes ---------------------------------------------------------------------------

def testing_mode() -> str | None:
    """The mode in force: set by :func:`with_testing_mode`, else ``DJANGO_JOBS["TESTING"]``."""
    return modes.current()


testing_mode.__test__ = False  # not a test, whatever its name says to pytest


class with_testing_mode(contextlib.ContextDecorator):
    """Switch the testing mode for a block or a test: ``"inline"``, ``"manual"`` or ``None``
    (``None`` goes back to production behaviour).

    ``inline`` runs each job as it is inserted, in the calling thread, without writing it;
    ``manual`` writes jobs and runs nothing (``runjobs`` refuses to start).
    """

    def __init__(self, mode: str | None) -> None:
        if mode not in (*modes.MODES, None):
            raise ValueError(f"testing mode must be 'inline', 'manual' or None, not {mode!r}")
        self.mode = mode
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> with_testing_mode:
        # None must override a setting too: store "production" as an explicit marker.
        self._tokens.append(modes.override.set(self.mode or "production"))
        return self

    def __exit__(self, *exc: Any) -> None:
        modes.override.reset(self._tokens.pop())

    def __call__(self, func):
        if inspect.iscoroutinefunction(func):
            # ContextDecorator would only cover the creation of the coroutine.
            @functools.wraps(func)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._recreate_cm():
                    return await func(*args, **kwargs)

            return wrapper
        return super().__call__(func)


# -- matching ----------------------------------------------------------------------------------

def _worker_path(worker: type | str) -> str:
    if isinstance(worker, str):
        return worker
    if isinstance(worker, type) and issubclass(worker, Worker):
        return worker.worker_path
    raise TypeError(f"worker must be a Worker subclass or a dotted path, not {worker!r}")


def _normalise(pattern: Any, what: str) -> Any:
    """A pattern as it would read back from the database, keeping ANY markers in place."""
    if isinstance(pattern, _Any):
        return pattern
    if isinstance(pattern, Mapping):
        return {_json_key(k): _normalise(v, what) for k, v in pattern.items()}
    if isinstance(pattern, (list, tuple)):
        return [_normalise(v, what) for v in pattern]
    return round_trip(pattern, what)


def _json_key(key: Any) -> str:
    """A dict key as JSON writes it (True -> "true", None -> "null", 1 -> "1")."""
    return key if isinstance(key, str) else next(iter(round_trip({key: 0}, "a key")))


def _matches(pattern: Any, value: Any) -> bool:
    """Dicts match as recursive subsets, lists element by element, ANY matches anything."""
    if isinstance(pattern, _Any):
        return True
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _matches(sub, value[key]) for key, sub in pattern.items())
    if isinstance(pattern, list):
        return (isinstance(value, list) and len(pattern) == len(value)
                and all(_matches(p, v) for p, v in zip(pattern, value, strict=True)))
    return pattern == value


#: Criteria in the order failure messages name them (then the other fields, in the model's).
_FIRST = ("worker", "queue", "args", "meta", "tags", "priority", "scheduled_at")
def _job_fields() -> dict[str, Any]:
    """Every column of ``Job`` (generated ones included) by name."""
    return {field.name: field for field in Job._meta.concrete_fields}


class _Criteria:
    """What a test looks for: any ``Job`` field by name (see :func:`all_enqueued`)."""

    def __init__(self, **criteria: Any) -> None:
        fields = _job_fields()
        unknown = [name for name in criteria if name not in fields]
        if unknown:
            close = difflib.get_close_matches(unknown[0], fields, n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"unknown job field {unknown[0]!r} to match{hint} (fields: "
                            f"{', '.join(fields)})")
        order = [*_FIRST, *(name for name in fields if name not in _FIRST)]
        # None leaves a field that is never NULL unchecked (as before); a nullable field given
        # None must be NULL.
        self.given = {name: criteria[name] for name in order if name in criteria
                      and (criteria[name] is not None or fields[name].null)}
        state = self.given.pop("state", None)
        self.states = ([state] if isinstance(state, str) else list(state)) if state \
            else list(ENQUEUED_STATES)
        self.filters: dict[str, Any] = {}
        self.patterns: dict[str, Any] = {}
        for name, value in self.given.items():
            field = fields[name]
            if name == "worker":
                self.filters["worker"] = _worker_path(value)
            elif value is None:
                self.filters[f"{name}__isnull"] = True
            elif isinstance(field, models.DateTimeField):
                at, delta = _moment(name, value)
                self.filters[f"{name}__gte"] = at - delta
                self.filters[f"{name}__lte"] = at + delta
            elif name == "tags":
                if isinstance(value, str) or not isinstance(value, Sequence):
                    raise TypeError(f"tags to match must be a list of strings, not {value!r}")
                self.patterns[name] = list(value)
            elif isinstance(field, models.JSONField):
                self.patterns[name] = _normalise(value, name)
            else:
                self.filters[name] = value
        if state is not None:
            self.given["state"] = state

    def queryset(self):
        jobs = Job.objects.using(get_engine().alias).filter(state__in=self.states)
        return jobs.filter(**self.filters).order_by("-id")

    def match(self, job: Job) -> bool:
        for name, pattern in self.patterns.items():
            value = getattr(job, name)
            if name == "tags":  # all present, in any order
                if not set(pattern) <= set(value or ()):
                    return False
            elif not _matches(pattern, value):  # args, meta, errors, attempted_by
                return False
        return True

    def find(self) -> list[Job]:
        return [job for job in self.queryset() if self.match(job)]

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.given.items()) or "any job"

    def extra_columns(self) -> list[str]:
        """Fields the listing of jobs shows beyond its usual ones: those looked for."""
        return [name for name in self.given if name not in _LISTED]


def _moment(name: str, value: Any) -> tuple[datetime.datetime, datetime.timedelta]:
    """A datetime criterion: ``value`` within :data:`TIME_DELTA`, or ``(value, delta)``."""
    at, delta = value if isinstance(value, tuple) and len(value) == 2 else (value, TIME_DELTA)
    if not isinstance(at, datetime.datetime) or not isinstance(delta, datetime.timedelta):
        raise TypeError(f"{name} to match must be a datetime or (datetime, timedelta), "
                        f"not {value!r}")
    if timezone.is_naive(at):
        raise TypeError(f"{name} to match must be timezone-aware, not {at!r}")
    return at, delta


#: Fields every line of a failure message shows.
_LISTED = ("id", "worker", "queue", "state", "priority", "args", "meta")


def _listing(states: Sequence[str], extra: Sequence[str] = (), limit: int = 20) -> str:
    jobs = list(Job.objects.using(get_engine().alias).filter(state__in=states)
                .order_by("-id")[:limit + 1])
    enqueued = set(states) == set(ENQUEUED_STATES)
    if not jobs:
        return "No jobs are enqueued." if enqueued else \
            f"No jobs are {' or '.join(sorted(states))}."
    what = "Enqueued jobs" if enqueued else f"Jobs {' or '.join(sorted(states))}"
    lines = [f"{what} (newest first{', first ' + str(limit) if len(jobs) > limit else ''}):"]
    lines += [_describe(job, extra) for job in jobs[:limit]]
    return "\n".join(lines)


def _trim(value: Any, width: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _describe(job: Job, extra: Sequence[str] = ()) -> str:
    return (f"  #{job.pk} {job.worker} queue={job.queue} state={job.state} "
            f"priority={job.priority} args={_trim(job.args)}"
            + (f" meta={_trim(job.meta)}" if job.meta else "")
            + "".join(f" {name}={_trim(getattr(job, name))}" for name in extra))


def all_enqueued(**criteria: Any) -> list[Job]:
    """Enqueued jobs (available, scheduled or suspended) matching ``criteria``, newest first.

    A criterion is any field of :class:`~django_jobs.models.Job` by name:

    * ``worker``: a worker class or its dotted path;
    * ``args``, ``meta``: recursive subsets, compared after a JSON round trip (:data:`ANY`
      matches any value); ``errors`` and ``attempted_by`` match the same way (a list matches
      element by element: ``errors=[{"attempt": 1, "error": ANY}]``);
    * ``tags``: all present;
    * every datetime (``scheduled_at``, ``inserted_at``, ``attempted_at``, ``completed_at``,
      ...): a datetime, matched within 1 s, or ``(datetime, timedelta)``;
    * ``state``: a state or a list of them, to look at other states than the enqueued ones;
    * any other field (``queue``, ``priority``, ``attempt``, ``max_attempts``, ``id``...):
      equal.

    ``None`` matches a NULL in a field that may be NULL (``completed_at=None``) and is ignored
    for the others. An unknown field name is a ``TypeError`` naming the closest one.
    """
    return _Criteria(**criteria).find()


def assert_enqueued(*, timeout: float | None = None, **criteria: Any) -> Job:
    """Assert that a job matching ``criteria`` (as :func:`all_enqueued`) is enqueued; return
    the newest match.

    With ``timeout`` (seconds), keep looking until one appears. The failure message lists the
    criteria and the jobs that were enqueued (in the states looked at), with the fields looked
    for.
    """
    wanted = _Criteria(**criteria)
    deadline = time.monotonic() + (timeout or 0)
    while True:
        found = wanted.find()
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            raise AssertionError(f"Expected a job matching {wanted.describe()}"
                                 f"{f' within {timeout} s' if timeout else ''}, found none.\n"
                                 f"{_listing(wanted.states, wanted.extra_columns())}")
        time.sleep(_POLL)


def assert_not_enqueued(*, timeout: float | None = None, **criteria: Any) -> None:
    """Assert that no job matching ``criteria`` (as :func:`all_enqueued`) is enqueued (for
    ``timeout`` seconds)."""
    wanted = _Criteria(**criteria)
    deadline = time.monotonic() + (timeout or 0)
    while True:
        found = wanted.find()
        if found:
            listing = "\n".join(_describe(job, wanted.extra_columns()) for job in found[:20])
            raise AssertionError(f"Expected no job matching {wanted.describe()}, found "
                                 f"{len(found)}:\n{listing}")
        if time.monotonic() >= deadline:
            return
        time.sleep(_POLL)


# -- running jobs in tests --------------------------------------------------------------------

def _check_result(worker: type, result: Any) -> None:
    if isinstance(result, type):
        raise InvalidJobError(f"{worker.worker_path}.perform returned the class {result!r}; "
                              f"return an instance, e.g. Snooze(30)")
    if inspect.isawaitable(result) or isinstance(result, types.GeneratorType):
        if hasattr(result, "close"):
            result.close()  # no "coroutine was never awaited" warning on top of the error
        raise InvalidJobError(f"{worker.worker_path}.perform returned {result!r} instead of a "
                              f"value: was an await or a return missing?")
    if isinstance(result, (Snooze, Cancel, Discard)) or result is None:
        return
    try:
        round_trip(result, f"the result of {worker.worker_path}.perform")
    except InvalidJobError:
        pass  # any value completes the job; recorded results check JSON themselves


def perform_job(worker: type | str | Job, args: Mapping[str, Any] | None = None, *,
                attempt: int | None = None, **options: Any) -> Any:
    """Build a job as ``new()`` would and run it now, in this thread, through the same
    executor and job features as ``runjobs`` (hooks, decryption, recorded results...).

    ``worker`` is a Worker class, its dotted path, or an existing job (then ``args`` and
    options must not be given). ``attempt`` runs the job as its Nth attempt (1 to its
    ``max_attempts``; default: the attempt after the job's own, so 1 for a new job):
    ``job.attempt`` is N inside ``perform``, and what follows a failure is decided for that
    attempt (the worker's ``backoff``; the last attempt is discarded). The job is not
    written. Returns what ``perform`` returned (or the result a job feature short-circuited
    it with), after checking it is a valid result; exceptions from ``perform`` propagate.
    """
    if isinstance(worker, Job):
        if args is not None or options:
            raise TypeError("perform_job(job) takes no args or options (attempt= only)")
        job = copy.copy(worker)  # the caller's job is left as it was
    else:
        job = new_job(worker, args, **options)
    if attempt is not None:
        if (isinstance(attempt, bool) or not isinstance(attempt, int)
                or not 1 <= attempt <= job.max_attempts):
            raise InvalidJobError(f"attempt must be an integer from 1 to the job's "
                                  f"max_attempts ({job.max_attempts}), not {attempt!r}")
        job.attempt = attempt - 1  # as_fetched counts the attempt that starts now
    worker_class = resolve_worker(job.worker)
    as_fetched(job, ["test", "perform_job"])
    _, result = execute(Running(job, detached=True), reraise=True, reset=False)
    _check_result(worker_class, result)
    return result


def drain_queue(queue: str, *, with_scheduled: bool | datetime.datetime = False,
                with_recursion: bool = False, with_limit: int | None = None,
                with_safety: bool = True) -> dict[str, int]:
    """Run the jobs of ``queue`` now, in this thread, in fetch order, as ``runjobs`` would.

    Jobs are claimed, executed and acknowledged through the engine and executor that
    ``runjobs`` uses. ``with_scheduled`` first makes scheduled and retryable jobs available
    (all of them with ``True``, those due by a datetime otherwise), before every round;
    ``with_recursion`` also runs the jobs that drained jobs insert (otherwise only the jobs
    there when draining started, and their retries, run); ``with_limit`` caps the number of
    jobs run; ``with_safety=False`` lets an exception from ``perform`` propagate after its
    outcome is written. Returns counts: completed, failed (retryable), discarded, cancelled,
    snoozed.
    """
    engine = get_engine()
    counts = {"completed": 0, "failed": 0, "discarded": 0, "cancelled": 0, "snoozed": 0}
    names = {JobState.COMPLETED: "completed", JobState.RETRYABLE: "failed",
             JobState.DISCARDED: "discarded", JobState.CANCELLED: "cancelled",
             JobState.SCHEDULED: "snoozed"}
    only: list[int] | None = None
    ran = 0
    # One job per fetch: nothing is left claimed when a failure stops the drain, and a
    # chunk worker's job gathers the rest of its chunk from what is still available.
    batch = 1
    while with_limit is None or ran < with_limit:
        if with_scheduled:
            _stage(queue, with_scheduled)
        if only is None and not with_recursion:
            only = list(Job.objects.using(engine.alias).filter(
                queue=queue, state=JobState.AVAILABLE).values_list("pk", flat=True))
        jobs = engine.fetch_jobs(queue, batch, ["test", "drain_queue"], timezone.now(),
                                 ids=only)
        if not jobs:
            break
        for job in jobs:
            running = Running(job)
            try:
                outcome, _ = execute(running, reraise=not with_safety, reset=False)
            except Exception:
                ack([running.outcome], using=engine.alias)
                raise
            ack([outcome], using=engine.alias)
            counts[names.get(outcome.state, "failed")] += 1
            ran += 1
    return counts


def _stage(queue: str, until: bool | datetime.datetime) -> None:
    engine = get_engine()
    due = (JobState.SCHEDULED, JobState.RETRYABLE)
    jobs = engine.jobs.filter(queue=queue, state__in=due)
    if isinstance(until, datetime.datetime):
        jobs = jobs.filter(scheduled_at__lte=until)
    transition(jobs, JobState.AVAILABLE, only_from=due, using=engine.alias)


# -- unittest ---------------------------------------------------------------------------------

class JobsTestMixin:
    """``assertEnqueued``, ``assertNotEnqueued``, ``all_enqueued``, ``perform_job``,
    ``perform_chunk`` and ``drain_queue`` as test case methods (see the module functions for
    the arguments)."""

    def assertEnqueued(self, *, timeout: float | None = None, **criteria: Any) -> Job:
        try:
            return assert_enqueued(timeout=timeout, **criteria)
        except AssertionError as exc:
            raise self.failureException(str(exc)) from None

    def assertNotEnqueued(self, *, timeout: float | None = None, **criteria: Any) -> None:
        try:
            assert_not_enqueued(timeout=timeout, **criteria)
        except AssertionError as exc:
            raise self.failureException(str(exc)) from None

    def all_enqueued(self, **criteria: Any) -> list[Job]:
        return all_enqueued(**criteria)

    def perform_job(self, worker: type | str | Job, args: Mapping[str, Any] | None = None, *,
                    attempt: int | None = None, **options: Any) -> Any:
        return perform_job(worker, args, attempt=attempt, **options)

    def perform_chunk(self, worker: type, args_list: Any) -> Any:
        return perform_chunk(worker, args_list)

    def drain_queue(self, queue: str, **options: Any) -> dict[str, int]:
        return drain_queue(queue, **options)


class JobsTestCase(JobsTestMixin, TestCase):
    """A Django ``TestCase`` with the django_jobs helpers."""

