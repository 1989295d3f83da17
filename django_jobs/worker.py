"""The ``Worker`` base class and the results ``perform`` may return."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .durations import Duration, to_seconds

if TYPE_CHECKING:
    from .models import Job


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

    #: Dotted path stored in ``Job.worker``; set for each subclass.
    worker_path: ClassVar[str]
    #: Validated class options, merged under per-job options by ``new()``.
    _defaults: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from .build import class_defaults

        cls.worker_path = f"{cls.__module__}.{cls.__qualname__}"
        cls._defaults = class_defaults(cls)

    # -- building and inserting ------------------------------------------------------------

    @classmethod
    def new(cls, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Build an unsaved job of this worker; see :func:`django_jobs.new_job` for options."""
        from .build import build_job

        return build_job(cls, args, options)

    @classmethod
    def enqueue(cls, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Build and insert a job at once: ``insert(cls.new(args, **options))``."""
        from .insertion import insert

        return insert(cls.new(args, **options))

    # -- running ----------------------------------------------------------------------------

    def perform(self, job: Job) -> Any:
        """Do the work. Return None or a value (completed), or a :class:`Snooze`,
        :class:`Cancel` or :class:`Discard`; raising an exception fails the attempt."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement perform(job)")

    def backoff(self, job: Job) -> float:
        """Seconds to wait before retrying ``job`` after its ``job.attempt``-th failure.

        Oban's default: ``15 + 2 ** attempt`` seconds, plus up to 10 % random jitter so that jobs
        failing together do not retry together.
        """
        base = 15 + 2 ** min(job.attempt, 20)
        return base + random.uniform(0, base * 0.1)

    def timeout(self, job: Job) -> float | None:
        """Seconds ``job`` may run before it is stopped and fails; None means no limit."""
        return None


@dataclass(frozen=True)
class Snooze:
    """Run the job again after ``seconds``; not counted as a failure."""

    seconds: float

    def __init__(self, seconds: Duration) -> None:
        object.__setattr__(self, "seconds", to_seconds(seconds, "Snooze"))


@dataclass(frozen=True)
class Cancel:
    """Stop the job for good in state ``cancelled``, recording ``reason``."""

    reason: Any = None


@dataclass(frozen=True)
class Discard:
    """Stop the job for good in state ``discarded``, recording ``reason``."""

    reason: Any = None
