"""Building jobs: options validated and merged, args and meta round-tripped through JSON.

Everything that can be wrong with a job is found here, before anything is written.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Mapping
from typing import Any

from django.db.models import signals
from django.db.models.base import ModelState
from django.utils import timezone

from . import features
from .durations import to_seconds
from .exceptions import ConfigurationError, InvalidJobError, UnknownOptionError
from .jsonutil import round_trip
from .models.job import QUEUE_MAX_LENGTH, Job, JobState
from .registry import check_path, is_remote, worker_class
from .unique import parse_replace, parse_unique

#: Options of ``new()``. The first group may also be class attributes of a worker.
CLASS_OPTIONS = ("queue", "priority", "max_attempts", "tags", "unique", "replace")
JOB_OPTIONS = (*CLASS_OPTIONS, "meta", "schedule_in", "scheduled_at")


def check_options(options: Mapping[str, Any], pipeline: features.Pipeline = (),
                  worker: str = "") -> None:
    """Reject option names that neither ``new()`` nor a job feature of the worker's
    ``pipeline`` knows, suggesting the closest valid one. The option of a feature the worker
    does not use is refused, naming the feature."""
    extra = None
    for name in options:
        if name in JOB_OPTIONS:
            continue
        if extra is None:
            extra = tuple(dict.fromkeys(n for f, _ in pipeline for n in f.options))
        if name in extra:
            continue
        for feature in features.registered_features():
            if name in feature.options:
                raise UnknownOptionError(
                    f"job option {name!r} belongs to the {feature.name} feature, which "
                    f"{worker or 'this worker'} does not use (set its class option first)")
        valid = (*JOB_OPTIONS, *extra)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise UnknownOptionError(f"unknown job option {name!r}{hint} "
                                 f"(valid: {', '.join(valid)})")


def validate_queue(queue: Any) -> str:
    if not isinstance(queue, str) or not queue or queue != queue.strip():
        raise InvalidJobError(f"queue must be a non-empty string without surrounding spaces, "
                              f"not {queue!r}")
    if len(queue) > QUEUE_MAX_LENGTH:
        raise InvalidJobError(f"queue name is {len(queue)} characters long; "
                              f"the limit is {QUEUE_MAX_LENGTH}")
    return queue


def validate_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise InvalidJobError(f"priority must be an integer from 0 (highest) to 9, "
                              f"not {priority!r}")
    return priority


def validate_max_attempts(max_attempts: Any) -> int:
    if (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
            or not 1 <= max_attempts <= 32767):
        raise InvalidJobError(f"max_attempts must be an integer from 1 to 32767, "
                              f"not {max_attempts!r}")
    return max_attempts


def validate_tags(tags: Any) -> list[str]:
    """Tags as Oban keeps them: strings, trimmed, without blanks or repeats, in order."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple, set, frozenset)):
        raise InvalidJobError(f"tags must be a list of strings, not {tags!r}")
    cleaned: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidJobError(f"tags must be strings, not {tag!r}")
        tag = tag.strip()
        if tag:
            cleaned[tag] = None
    return list(cleaned)


#: Meta keys the jobs table copies into a column of its own (generated columns of Job: the
#: chain and batch indexes), with the column each fills.
META_COLUMNS = {"chain_id": "chain", "batch_id": "batch"}


def check_meta_columns(meta: Mapping[str, Any]) -> None:
    """Raise InvalidJobError when a meta key that fills a column of its own (``chain_id``,
    ``batch_id``) holds what the column cannot: anything but a string of at most its length
    (PostgreSQL refuses the row at insert; SQLite would store an id no index lookup finds)."""
    for key, column in META_COLUMNS.items():
        value = meta.get(key)
        if value is None:
            continue
        limit = Job._meta.get_field(column).output_field.max_length
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidJobError(f"meta[{key!r}] must be a string of at most {limit} "
                                  f"characters, not {value!r:.80}")


def class_defaults(worker: type) -> dict[str, Any]:
    """Validate a worker class's options; raise ConfigurationError naming the class."""
    try:
        return {
            "queue": validate_queue(worker.queue),
            "priority": validate_priority(worker.priority),
            "max_attempts": validate_max_attempts(worker.max_attempts),
            "tags": validate_tags(worker.tags),
            "unique": parse_unique(worker.unique),
            "replace": parse_replace(worker.replace),
        }
    except InvalidJobError as exc:
        raise ConfigurationError(f"{worker.__module__}.{worker.__qualname__}: {exc}") from None


def scheduled_time(options: Mapping[str, Any], now: datetime.datetime) -> datetime.datetime | None:
    """``scheduled_at`` from ``schedule_in`` or ``scheduled_at``, or None for "now"."""
    if "schedule_in" in options and "scheduled_at" in options:
        raise InvalidJobError("give schedule_in or scheduled_at, not both")
    if "schedule_in" in options:
        seconds = to_seconds(options["schedule_in"], "schedule_in")
        try:
            return now + datetime.timedelta(seconds=seconds)
        except OverflowError:  # past datetime.max (year 9999)
            raise InvalidJobError(f"schedule_in is too far in the future: "
                                  f"{options['schedule_in']!r}") from None
    if "scheduled_at" in options:
        at = options["scheduled_at"]
        if not isinstance(at, datetime.datetime):
            raise InvalidJobError(f"scheduled_at must be a datetime, not {at!r}")
        if timezone.is_naive(at):
            raise InvalidJobError("scheduled_at must be timezone-aware "
                                  "(use django.utils.timezone.now() or a tzinfo)")
        return at
    return None


#: Every Job column's default for a new job, except the ones build_job always sets: the
#: immutable ones as a template dict, the mutable ones (lists, dicts, callables) apart.
_DEFAULTS: tuple[dict[str, Any], dict[str, Any]] | None = None


def _unsaved_job(**values: Any) -> Job:
    """A new, unsaved Job with ``values`` over the column defaults.

    The same object ``Job(**values)`` makes, built without Model.__init__'s per-field
    keyword handling, which was half the cost of ``new()`` (the enqueue hot path). Job has no
    pre_init/post_init receivers of its own; ones connected by a project are still sent.
    """
    global _DEFAULTS
    if signals.pre_init.has_listeners(Job) or signals.post_init.has_listeners(Job):
        return Job(**values)
    if _DEFAULTS is None:
        fixed, fresh = {}, {}
        for f in Job._meta.concrete_fields:
            if f.attname in values or getattr(f, "generated", False):
                continue
            default = f.get_default()
            if callable(default) or isinstance(default, (dict, list)):
                fresh[f.attname] = default
            else:
                fixed[f.attname] = default
        _DEFAULTS = fixed, fresh
    fixed, fresh = _DEFAULTS
    job = Job.__new__(Job)
    job._state = ModelState()
    state = job.__dict__
    state.update(fixed)
    for name, default in fresh.items():
        state[name] = default() if callable(default) else default.copy()
    state.update(values)
    return job


def build_job(cls: type, args: Mapping[str, Any] | None,
              options: Mapping[str, Any]) -> Job:
    """Build an unsaved :class:`Job` of the worker class ``cls``; raise InvalidJobError (or
    the ``ValidationError`` of a job feature) for anything that is wrong.

    The worker's job features first prepare the args and options (innermost first), then the
    job is built and each feature completes it (see :mod:`django_jobs.features`). ``args`` and
    ``meta`` are stored as they will read back from the database (JSON round trip). The job is
    ``scheduled`` when its time is in the future, else ``available``.
    """
    pipeline = features.pipeline(cls)
    if args is None:
        args = {}
    if pipeline:
        options = dict(options)
        for feature, config in reversed(pipeline):
            args = feature.prepare(cls, args, options, config)
    check_options(options, pipeline, cls.worker_path)
    job = _build(cls.worker_path, cls._defaults, args, options)
    for feature, config in reversed(pipeline):
        feature.build(job, options, config)
    check_meta_columns(job.meta)
    _unique_key(job)
    return job


#: The options of a remote worker's job that the job does not give: the ``Worker`` base's.
#: There is no default queue: the job must name the queue the other deployment runs.
REMOTE_DEFAULTS: dict[str, Any] = {"priority": 0, "max_attempts": 20, "tags": [],
                                   "unique": None, "replace": None}


def build_remote_job(path: str, args: Mapping[str, Any] | None,
                     options: Mapping[str, Any]) -> Job:
    """Build an unsaved job of a worker of another deployment (``path`` under
    ``DJANGO_JOBS["REMOTE_WORKERS"]``), without importing it.

    Nothing of the worker class applies: every option it would give comes from ``options``
    (``queue`` is required), and no job feature runs (structured args, encryption,
    deadlines...: their options are refused). ``args`` must be JSON; the node that runs the
    job validates them.
    """
    for name in options:
        if name in features.feature_options():
            raise UnknownOptionError(
                f"job option {name!r} belongs to a job feature, and no job feature runs for "
                f"the remote worker {path} (this deployment does not import it)")
    check_options(options)
    if "queue" not in options:
        raise InvalidJobError(f"a job of the remote worker {path} needs queue=...: the queue "
                              f"that the deployment running it serves")
    job = _build(path, REMOTE_DEFAULTS, {} if args is None else args, options)
    check_meta_columns(job.meta)
    _unique_key(job)
    return job


def _build(path: str, defaults: Mapping[str, Any], args: Any,
           options: Mapping[str, Any]) -> Job:
    """The job of worker ``path`` from its (validated) class ``defaults`` and ``options``,
    before features complete it and its unique key is set."""
    merged = {**defaults, **options}
    if type(args) is not dict and not isinstance(args, Mapping):
        raise InvalidJobError(f"args must be a dict, not {type(args).__name__}")
    meta = options.get("meta", {})
    if type(meta) is not dict and not isinstance(meta, Mapping):
        raise InvalidJobError(f"meta must be a dict, not {type(meta).__name__}")
    # round_trip returns a new dict whatever it is given: a dict needs no copy first.
    args = round_trip(args if type(args) is dict else dict(args), "args") if args else {}
    meta = round_trip(meta if type(meta) is dict else dict(meta), "meta") if meta else {}
    queue = validate_queue(merged["queue"])
    unique = parse_unique(merged["unique"]) if "unique" in options else merged["unique"]
    replace = parse_replace(merged["replace"]) if "replace" in options else merged["replace"]

    now = timezone.now()
    at = scheduled_time(options, now) if options else None
    job = _unsaved_job(
        state=JobState.SCHEDULED if at is not None and at > now else JobState.AVAILABLE,
        queue=queue,
        worker=path,
        args=args,
        meta=meta,
        tags=validate_tags(merged["tags"]) if "tags" in options else list(merged["tags"]),
        priority=validate_priority(merged["priority"]),
        max_attempts=validate_max_attempts(merged["max_attempts"]),
        scheduled_at=at or now,
        inserted_at=now,
    )
    job._scheduled_now = at is None
    job._unique = unique
    job._replace = replace
    return job


def _unique_key(job: Job) -> None:
    """Set the unique key and states of a job that is unique (after features changed it)."""
    unique = job._unique
    if unique is not None:
        job.unique_key = unique.key(worker=job.worker, queue=job.queue, args=job.args,
                                    meta=job.meta)
        job.unique_states = unique.states_mask


def new_job(worker: type | str, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
    """Build an unsaved job for a worker class or dotted path; ``insert`` / ``insert_all``
    write it.

    Options: ``queue``, ``priority`` (0-9), ``max_attempts`` (>= 1), ``tags``, ``meta`` (dict),
    ``schedule_in`` (seconds, timedelta or ``(n, "minutes")``) or ``scheduled_at`` (aware
    datetime), ``unique`` and ``replace``, and the options of job features (such as
    ``deadline``). Unset options come from the worker class.

    A path under ``DJANGO_JOBS["REMOTE_WORKERS"]`` names a worker of another deployment: it is
    not imported, ``queue`` is required and the other options default to the ``Worker``
    base's (see :func:`build_remote_job`). Any other path must import as a worker here, or
    :class:`~django_jobs.exceptions.WorkerNotImportable` is raised.
    """
    if isinstance(worker, str) and is_remote(check_path(worker)):
        return build_remote_job(worker, args, options)
    return build_job(worker_class(worker), args, options)
