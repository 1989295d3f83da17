"""A ``django.tasks`` backend: functions decorated with Django's ``@task`` run as django_jobs jobs.

::

    TASKS = {"default": {"BACKEND": "django_jobs.tasks.JobsBackend",
                         "QUEUES": ["default", "mailers"],
                         "OPTIONS": {"max_attempts": 5}}}

``task.enqueue(*args, **kwargs)`` inserts one job of :class:`TaskWorker` (or
:class:`AsyncTaskWorker` for an ``async def`` task) in the caller's transaction, with args
``{"task": <dotted path>, "args": [...], "kwargs": {...}}``; ``runjobs`` runs it like any job
(retries with backoff, timeouts, cancel, the admin), and ``get_result(id)`` reads the job row
back as a ``TaskResult``. Works with Django 6's ``django.tasks`` and with the ``django-tasks``
backport on Django 5.2 (``pip install "django-jobs[tasks]"``). See docs/tasks.md.

What is stored, all in the job row:

* ``meta["task"]``: the task's dotted path (the admin's worker column and search show it);
  ``meta["task_info"]``: the backend alias, Django's own priority, ``run_after``, the timeout
  and the result limit the job was enqueued with;
* ``meta["task_runs"]``: written with each attempt's outcome (by :class:`TaskFeature`): when
  the first attempt started, the node of each attempt, and the exception class of each entry
  of ``errors`` that an exception made;
* the return value of a successful run, recorded with :func:`django_jobs.pro.recorded.recorded_meta`
  (the recorded-results codec: ``fetch_recorded(job)`` reads it too).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core import checks
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.module_loading import import_string

from .build import validate_max_attempts, validate_queue, validate_tags
from .conf import jobs_settings
from .durations import to_seconds
from .engines import get_engine
from .exceptions import InvalidJobError, JobsError
from .features import Attempt, Feature, register_feature
from .insertion import insert
from .models import FINISHED_STATES, Job, JobState
from .pro.recorded import DEFAULT_LIMIT, NotRecorded, fetch_recorded, recorded_meta
from .unique import parse_unique
from .worker import Worker

try:  # Django 6.0 and later
    from django.tasks import TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError:  # Django 5.2 with the django-tasks backport (the "tasks" extra)
    try:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as exc:
        raise ImportError("django_jobs.tasks needs django.tasks (Django 6.0+) or, on Django "
                          "5.2, the django-tasks backport: pip install 'django-jobs[tasks]'"
                          ) from exc

logger = logging.getLogger("django_jobs.tasks")

__all__ = ["AsyncTaskWorker", "JobsBackend", "TaskFeature", "TaskStopped", "TaskWorker",
           "job_priority", "result_from_job", "task_options"]

#: Options of the backend (``OPTIONS``) and of :func:`task_options`.
OPTIONS = ("max_attempts", "tags", "unique", "timeout", "backoff", "result_limit")

#: Job state -> the status of its task.
STATUS = {
    JobState.AVAILABLE: TaskResultStatus.READY,
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.SUSPENDED: TaskResultStatus.READY,
    JobState.RETRYABLE: TaskResultStatus.READY,
    JobState.EXECUTING: TaskResultStatus.RUNNING,
    JobState.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobState.DISCARDED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}

#: Django's task signals, by name (for log messages).
SIGNAL_NAMES = {task_enqueued: "task_enqueued", task_started: "task_started",
                task_finished: "task_finished"}

#: The attribute :func:`task_options` sets on a task function.
OPTIONS_ATTRIBUTE = "django_jobs_options"


class TaskStopped(JobsError):
    """An entry of a task's errors that no exception of the task made: the job was cancelled,
    put back by a stopping node, or rescued from a dead one. The entry's traceback holds the
    reason."""


def class_path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def job_priority(priority: int) -> int:
    """Django's task priority (-100 lowest .. 100 highest) as a django_jobs priority (0 runs
    first .. 9): 80..100 -> 0, 60..79 -> 1, 40..59 -> 2, 20..39 -> 3, 0..19 -> 4 (the default
    0 is 4), -20..-1 -> 5, -40..-21 -> 6, -60..-41 -> 7, -80..-61 -> 8, -100..-81 -> 9."""
    return max(0, 4 - priority // 20)


# -- options ----------------------------------------------------------------------------------

def parse_options(options: Any, where: str) -> dict[str, Any]:
    """Validate backend or task options; return them with timeouts in seconds. Raise
    :class:`InvalidJobError` naming ``where`` and the bad option."""
    if not isinstance(options, Mapping):
        raise InvalidJobError(f"{where} must be a dict, not {options!r}")
    parsed: dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTIONS:
            close = difflib.get_close_matches(str(name), OPTIONS, n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise InvalidJobError(f"{where} has an unknown option {name!r}{hint} "
                                  f"(valid: {', '.join(OPTIONS)})")
        try:
            parsed[name] = _parse_option(name, value)
        except InvalidJobError as exc:
            raise InvalidJobError(f"{where}: {exc}") from None
    return parsed


def _parse_option(name: str, value: Any) -> Any:
    if name == "max_attempts":
        return validate_max_attempts(value)
    if name == "tags":
        return validate_tags(value)
    if name == "unique":
        spec = parse_unique(value)
        # The task's path is in the args: a unique task must compare them, or two different
        # tasks would count as duplicates of each other.
        if spec is not None and ("args" not in spec.fields
                                 or (spec.keys and "task" not in spec.keys)):
            raise InvalidJobError("unique must compare the task: keep 'args' in its fields "
                                  "(and 'task' in its keys, if you give keys)")
        return value
    if name in ("timeout", "backoff"):
        if value is None:
            return None
        seconds = to_seconds(value, name)
        if name == "timeout" and seconds <= 0:
            raise InvalidJobError(f"timeout must be more than 0 seconds, not {value!r}")
        return seconds
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:  # result_limit
        raise InvalidJobError(f"result_limit must be a positive number of bytes, "
                              f"not {value!r}")
    return value


def task_options(**options: Any) -> Callable[[Callable], Callable]:
    """Per-task django_jobs options, placed *below* Django's ``@task``::

        @task(queue_name="mailers")
        @task_options(max_attempts=3, timeout=30, tags=["mail"], unique={"period": 60})
        def send_welcome(user_id): ...

    Options: ``max_attempts``, ``tags``, ``unique``, ``timeout`` (seconds, a timedelta or
    ``(n, "minutes")``), ``backoff`` (seconds between a failed attempt and the next, instead
    of the default exponential backoff) and ``result_limit`` (bytes of a recorded return value
    after compression); they override the backend's ``OPTIONS``. A bad option raises
    ``InvalidTask`` at import.
    """
    try:
        parsed = parse_options(options, "task_options()")
    except InvalidJobError as exc:
        raise InvalidTask(str(exc)) from None

    def decorate(func: Callable) -> Callable:
        if isinstance(func, Task) or not callable(func):
            raise InvalidTask("@task_options() must be placed below @task, on the function")
        setattr(func, OPTIONS_ATTRIBUTE, parsed)
        return func

    return decorate


# -- running ----------------------------------------------------------------------------------

def load_task(path: str) -> Task:
    """The ``Task`` object a task job names; raise ``InvalidTask`` when ``path`` does not
    import as one."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise InvalidTask(f"task {path} cannot be imported: {exc}") from None
    if not isinstance(found, Task):
        raise InvalidTask(f"{path} is not a task (decorate the function with @task)")
    return found


def stored_task(job: Job, task: Task | None = None) -> Task:
    """The task of ``job`` as it was enqueued (priority, queue, ``run_after``, backend). Built
    without validation: the result describes what was enqueued, even if the settings changed
    since."""
    task = task or load_task(job.args["task"])
    info = _info(job)
    run_after = info.get("run_after")
    changes = {"priority": info.get("priority", task.priority), "queue_name": job.queue,
               "backend": info.get("backend", task.backend),
               "run_after": datetime.datetime.fromisoformat(run_after) if run_after else None}
    copy = object.__new__(type(task))
    for field in dataclasses.fields(task):
        object.__setattr__(copy, field.name, changes.get(field.name, getattr(task, field.name)))
    return copy


def _meta(job: Job) -> dict:
    return job.meta if isinstance(job.meta, dict) else {}


def _info(job: Job) -> dict:
    return _meta(job).get("task_info") or {}


def _runs(job: Job) -> dict:
    return _meta(job).get("task_runs") or {}


def _node(job: Job) -> str:
    by = job.attempted_by
    return str(by[0]) if isinstance(by, list) and by else "unknown"


def result_from_job(job: Job, task: Task | None = None, *,
                    result_id: str | None = None) -> TaskResult:
    """The ``TaskResult`` a task job's row stands for (see docs/tasks.md for each field);
    ``task``: the job's task when the caller has it already, ``result_id``: the id of a job
    that has none (inline testing mode)."""
    status = STATUS[job.state]
    runs = _runs(job)
    exceptions = runs.get("exceptions") or {}
    stopped = class_path(TaskStopped)
    errors = [TaskError(exception_class_path=exceptions.get(str(index), stopped),
                        traceback=str(entry.get("error", "")) if isinstance(entry, dict) else "")
              for index, entry in enumerate(job.errors or [])]
    # One worker id per attempt: the node recorded with the attempt's outcome, or, for the
    # attempt running now (or one whose node died), the node that last claimed the job.
    workers = runs.get("workers") or {}
    worker_ids = [str(workers.get(str(n)) or _node(job)) for n in range(1, job.attempt + 1)]
    started = runs.get("started_at")
    finished_at = None
    if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED):
        finished_at = job.finished_at or job.attempted_at or timezone.now()
    task_args = job.args if isinstance(job.args, dict) else {}
    result = TaskResult(
        task=stored_task(job, task), id=result_id or str(job.pk), status=status,
        enqueued_at=job.inserted_at,
        started_at=datetime.datetime.fromisoformat(started) if started else job.attempted_at,
        finished_at=finished_at, last_attempted_at=job.attempted_at,
        args=list(task_args.get("args") or []), kwargs=dict(task_args.get("kwargs") or {}),
        backend=_info(job).get("backend", "default"), errors=errors, worker_ids=worker_ids)
    if status == TaskResultStatus.SUCCESSFUL:
        try:
            value = fetch_recorded(job)
        except NotRecorded:  # the task returned None
            value = None
        object.__setattr__(result, "_return_value", value)
    return result


def _send(signal: Any, result: TaskResult) -> None:
    """Send a task signal; a receiver that raises is logged and never fails the job."""
    try:
        sender = type(result.task.get_backend())
    except Exception:  # the alias is not configured in this process
        sender = JobsBackend
    for receiver, response in signal.send_robust(sender, task_result=result):
        if isinstance(response, Exception):
            name = SIGNAL_NAMES.get(signal, "task signal")
            logger.error("%s receiver %r failed for task %s: %r", name, receiver, result.id,
                         response, exc_info=response)


class TaskWorker(Worker):
    """Runs one ``@task`` function: imports the task by the dotted path in the job's args and
    calls it with their ``args`` and ``kwargs`` (and a ``TaskContext`` first when the task
    takes context). Its return value, normalised to JSON as Django does, is recorded with the
    job. Raising fails the attempt: retried with backoff until ``max_attempts``.
    """

    #: Marks the workers :class:`TaskFeature` applies to.
    runs_tasks = True
    #: What :meth:`begin` returned for this attempt (set by :class:`TaskFeature` before
    #: ``perform``, in the thread that runs the job, also for async tasks).
    prepared: tuple[Task, list, dict] | None = None
    #: The recorded return value's meta keys, once :meth:`finish` encoded it.
    result_meta: dict | None = None

    def timeout(self, job: Job) -> float | None:
        return _info(job).get("timeout")

    def backoff(self, job: Job) -> float:
        seconds = _info(job).get("backoff")
        return super().backoff(job) if seconds is None else seconds

    def begin(self, job: Job) -> tuple[Task, list, dict]:
        """Load the task, send ``task_started``; return the task and the call's arguments."""
        task = stored_task(job)
        args, kwargs = list(job.args.get("args") or []), dict(job.args.get("kwargs") or {})
        result = result_from_job(job, task)
        _send(task_started, result)
        if task.takes_context:
            args.insert(0, TaskContext(task_result=result))
        return task, args, kwargs

    def finish(self, job: Job, value: Any) -> Any:
        """Normalise the return value to JSON (Django's ``TypeError`` for anything else fails
        the attempt) and encode it for recording (over ``result_limit``: fails it too)."""
        value = normalize_json(value)
        if value is not None:
            self.result_meta = recorded_meta(value, _info(job).get("result_limit")
                                             or DEFAULT_LIMIT, job.args.get("task"))
        return value

    def perform(self, job: Job) -> Any:
        task, args, kwargs = self.prepared or self.begin(job)
        return self.finish(job, task.call(*args, **kwargs))


class AsyncTaskWorker(TaskWorker):
    """:class:`TaskWorker` for ``async def`` tasks: the coroutine runs on the executor's event
    loop, so a timeout or a cancel stops it at its next ``await``."""

    async def perform(self, job: Job) -> Any:
        task, args, kwargs = self.prepared or self.begin(job)
        return self.finish(job, await task.acall(*args, **kwargs))


#: The worker paths of task jobs.
TASK_WORKERS = (TaskWorker.worker_path, AsyncTaskWorker.worker_path)


class TaskFeature(Feature):
    """The job feature of task workers: records each attempt for the ``TaskResult`` and sends
    ``task_finished`` once a task's final outcome is written."""

    name = "tasks"

    def setup(self, worker: type) -> bool | None:
        return True if getattr(worker, "runs_tasks", False) else None

    def before(self, attempt: Attempt, config: bool) -> None:
        # Here rather than in perform: in the job's thread, outside the event loop of an
        # async task, so task_started receivers may use the ORM.
        attempt.worker.prepared = attempt.worker.begin(attempt.job)

    def after(self, attempt: Attempt, config: bool) -> None:
        if attempt.state is None:  # put back by a stopping node: not an attempt of the task
            return
        job = attempt.job
        runs = dict(_runs(job))
        if not runs.get("started_at") and job.attempted_at:
            runs["started_at"] = job.attempted_at.isoformat()
        runs["workers"] = {**(runs.get("workers") or {}), str(job.attempt): _node(job)}
        if attempt.error is not None:
            # The executor appends this attempt's entry to errors: its index is the old length.
            runs["exceptions"] = {**(runs.get("exceptions") or {}),
                                  str(len(job.errors or [])): class_path(type(attempt.error))}
        updates = {"task_runs": runs}
        if attempt.state == "complete":
            updates.update(getattr(attempt.worker, "result_meta", None) or {})
        attempt.write_meta(**updates)

    def acked(self, changes: list, using: str) -> None:
        ids = [change.id for change in changes if change.new in FINISHED_STATES]
        if not ids:
            return
        try:
            # The rows as this transaction wrote them; the signal goes after the commit, so
            # a receiver's get_result() reads the same.
            results = [result_from_job(job) for job in Job.objects.using(using).filter(pk__in=ids)]
        except Exception:  # a task that no longer imports: nothing to signal, never a failure
            logger.exception("cannot build the results of finished task jobs %s", ids)
            return
        transaction.on_commit(lambda: [_send(task_finished, r) for r in results], using=using)


register_feature(TaskFeature())


# -- the backend ------------------------------------------------------------------------------

class JobsBackend(BaseTaskBackend):
    """The ``django.tasks`` backend that stores tasks as django_jobs jobs (docs/tasks.md)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        try:
            self.job_options = parse_options(self.options, f"TASKS[{alias!r}]['OPTIONS']")
        except InvalidJobError as exc:
            raise InvalidTaskBackend(str(exc)) from None

    def check(self, **kwargs: Any) -> list:
        """``django_jobs.W101``: a queue of the backend that ``DJANGO_JOBS["QUEUES"]`` does
        not run (its tasks would wait for a ``runjobs --queue`` that names it)."""
        served = jobs_settings.QUEUES if isinstance(jobs_settings.QUEUES, dict) else {}
        missing = sorted(queue for queue in self.queues if queue not in served)
        if not missing:
            return []
        return [checks.Warning(
            f"TASKS[{self.alias!r}]['QUEUES'] lists {', '.join(map(repr, missing))}, which "
            f"DJANGO_JOBS['QUEUES'] does not run.",
            hint="Add each to DJANGO_JOBS['QUEUES'] (queue -> limit), or start runjobs with "
                 "--queue NAME=LIMIT on the nodes that should run it.",
            id="django_jobs.W101")]

    def validate_task(self, task: Task) -> None:
        """Django's checks, plus what a ``runjobs`` process needs: an importable module, a
        queue name django_jobs accepts, valid :func:`task_options`."""
        super().validate_task(task)
        if task.func.__module__ == "__main__":
            raise InvalidTask("Task function must be importable by runjobs: define it in a "
                              "module, not in __main__.")
        try:
            validate_queue(task.queue_name)
            parse_options(getattr(task.func, OPTIONS_ATTRIBUTE, {}), "task_options()")
        except InvalidJobError as exc:
            raise InvalidTask(str(exc)) from None

    def new_job(self, task: Task, args: Any, kwargs: Any) -> Job:
        """The unsaved job for ``task(*args, **kwargs)``; raise ``InvalidTask`` for a task
        ``runjobs`` could not load, Django's ``TypeError`` for arguments that are not JSON."""
        self.validate_task(task)
        if load_task(task.module_path).func is not task.func:
            raise InvalidTask(f"{task.module_path} does not import as this task: runjobs "
                              f"finds tasks by their dotted path")
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        options = {**self.job_options, **getattr(task.func, OPTIONS_ATTRIBUTE, {})}
        info = {"backend": self.alias, "priority": task.priority,
                "run_after": task.run_after.isoformat() if task.run_after else None,
                "timeout": options.pop("timeout", None),
                "backoff": options.pop("backoff", None),
                "result_limit": options.pop("result_limit", None)}
        worker = AsyncTaskWorker if inspect.iscoroutinefunction(task.func) else TaskWorker
        if task.run_after is not None:
            options["scheduled_at"] = task.run_after
        return worker.new({"task": task.module_path, "args": args, "kwargs": kwargs},
                          queue=task.queue_name, priority=job_priority(task.priority),
                          meta={"task": task.module_path, "task_info": info}, **options)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Insert the task's job in the caller's transaction; return its ``TaskResult``. A
        unique task that has a duplicate returns the duplicate's result (no signal)."""
        job = insert(self.new_job(task, args, kwargs))
        if job.pk is None:  # inline testing mode: it ran already, and nothing was written
            result = result_from_job(job, task, result_id=f"inline-{get_random_string(16)}")
            _send(task_enqueued, result)
            if result.is_finished:
                _send(task_finished, result)
            return result
        result = result_from_job(job, task if not job.conflict else None)
        if not job.conflict:
            _send(task_enqueued, result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        return result_from_job(self._job(result_id))

    async def aget_result(self, result_id: str) -> TaskResult:
        return await sync_to_async(self.get_result, thread_sensitive=True)(result_id)

    def _job(self, result_id: Any) -> Job:
        try:
            pk = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        if not 0 < pk < 2 ** 63:  # beyond any id (and beyond what SQLite can bind)
            raise TaskResultDoesNotExist(result_id)
        job = (Job.objects.using(get_engine().alias)
               .filter(pk=pk, worker__in=TASK_WORKERS).first())
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        return job
