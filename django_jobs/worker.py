"""The ``Worker`` base class, and the results ``perform`` may return (re-exported)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from . import features, registry
from .registry import worker_class
from .build import build_job, class_defaults
from .exceptions import ConfigurationError
from .execution.attempts import default_backoff
from .insertion import insert
from .models.job import Job
from .results import Cancel, Discard, Snooze

__all__ = ["Cancel", "Discard", "Snooze", "Worker"]


class Worker:
    """Base class of every worker: options as class attributes, work in :meth:`perform`.

    Subclass it, set any of the options below, and implement ``perform(job)``::

        class MailerWorker(Worker):
            queue = "mailers"
            max_attempts = 3
            unique = {"period": 60, "keys": ["email"]}

            def perform(self, job):
                deliver(job.args["email"])

    Options are validated when the class is defined (a bad one raises
    :class:`~django_jobs.exceptions.ConfigurationError` at import) and can be overridden per job
    in :meth:`new`. The job's ``worker`` column stores the class's dotted path
    (:attr:`worker_path`), so a worker must be importable at module level.
    """

    #: Queue the worker's jobs go to.
    queue: ClassVar[str] = "default"
    #: 0 (highest) to 9.
    priority: ClassVar[int] = 0
    #: Attempts before a failing job is discarded (at least 1).
    max_attempts: ClassVar[int] = 20
    #: Tags added to every job (strings; trimmed and de-duplicated).
    tags: ClassVar[Sequence[str]] = ()
    #: ``None``, ``True`` or a dict: ``period``, ``fields``, ``keys``, ``states``, ``timestamp``.
    unique: ClassVar[Mapping[str, Any] | bool | None] = None
    #: On a unique conflict, fields of the existing job to update: a list or ``{state: [..]}``.
    replace: ClassVar[Mapping[str, Sequence[str]] | Sequence[str] | None] = None
    #: Dotted paths this worker was known by before a rename: jobs stored under them run here
    #: (:mod:`django_jobs.pro.aliases`).
    aliases: ClassVar[Sequence[str]] = ()
    #: Hook classes run around this worker's jobs, after its own hook methods
    #: (:mod:`django_jobs.pro.hooks`).
    hooks: ClassVar[Sequence[type]] = ()

    #: Where each attempt runs: ``"thread"`` (a thread of the node) or ``"process"`` (a job
    #: process of the node's pool, which a timeout, a cancel or a forced deadline can kill
    #: even while it is blocked in C; :mod:`django_jobs.runtime.process_pool`).
    executor: ClassVar[str] = "thread"

    #: Dotted path stored in ``Job.worker``; set for each subclass.
    worker_path: ClassVar[str]
    #: Validated class options, merged under per-job options by ``new()``.
    _defaults: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.worker_path = f"{cls.__module__}.{cls.__qualname__}"
        if cls.executor not in ("thread", "process"):
            raise ConfigurationError(f"{cls.worker_path}: executor must be 'thread' or "
                                     f"'process', not {cls.executor!r}")
        cls._defaults = class_defaults(cls)
        registry.register(cls)
        try:
            features.pipeline(cls)  # job features read their class options now (errors at import)
        except Exception:
            registry.forget(cls)  # a class that failed to define claims nothing
            raise

    # -- building and inserting ------------------------------------------------------------

    @classmethod
    def new(cls, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Build an unsaved job of this worker; see :func:`django_jobs.new_job` for options."""
        return build_job(worker_class(cls), args, options)

    @classmethod
    def enqueue(cls, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Build and insert a job at once: ``insert(cls.new(args, **options))``."""
        return insert(cls.new(args, **options))

    # -- running ----------------------------------------------------------------------------

    def perform(self, job: Job) -> Any:
        """Do the work. Return None or a value (completed), or a :class:`Snooze`,
        :class:`Cancel` or :class:`Discard`; raising an exception fails the attempt."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement perform(job)")

    def backoff(self, job: Job) -> float:
        """Seconds to wait before retrying ``job`` after its ``job.attempt``-th failure
        (:func:`default_backoff` unless overridden)."""
        return default_backoff(job.attempt)

    def timeout(self, job: Job) -> float | None:
        """Seconds ``job`` may run before it is stopped and fails; None means no limit."""
        return None
