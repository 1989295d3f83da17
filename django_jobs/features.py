"""Job features: behaviour added to workers at the three moments of a job's life.

A feature is an object with up to four methods, registered once with :func:`register_feature`.
Each worker class gets a *pipeline*: the registered features whose :meth:`Feature.setup`
returned a configuration for it, in registration order. Registration order runs from the
database to ``perform``, the way Django's middleware runs from the request to the view:

* **built** (``new()``, ``enqueue()``, ``insert_all()``): :meth:`Feature.prepare` then
  :meth:`Feature.build` run from ``perform``'s side outwards (last registered first), so the
  feature nearest the database (say, encryption) is the last to see the job before it is
  written;
* **run**: :meth:`Feature.before` runs from the database inwards (first registered first; it
  may change the job, or short-circuit ``perform`` with a result), then ``perform``, then
  :meth:`Feature.after` outwards (it sees the outcome and may add to what is written, or fail
  the attempt by raising);
* **written** (inserted and acked): inside the transaction that inserts jobs,
  :meth:`Feature.inserted` gets the jobs just written; inside the transaction that changes the
  state of jobs (acks, rescues, cancel, retry, delete...), :meth:`Feature.acked` gets the
  changes. Both are called only with jobs of workers whose pipeline has the feature, so
  workers that use no such feature pay nothing for them. (Project code that wants every
  change connects to the :data:`django_jobs.signals.state_changed` signal instead.)

``runjobs``, inline mode, ``perform_job`` and ``drain_queue`` all run this pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from . import registry
from .exceptions import ConfigurationError, WorkerNotImportable

#: States an attempt can end in, as :meth:`Feature.after` and worker hooks see them (Oban's
#: names): ``complete``, ``cancel``, ``discard``, ``error`` (failed, retried or discarded) and
#: ``snooze``.
ATTEMPT_STATES = ("complete", "cancel", "discard", "error", "snooze")


class Attempt:
    """One run of a job, as features see it.

    ``job`` is the job being run (features may change it in :meth:`Feature.before`),
    ``worker`` the worker instance. After ``perform`` (or a short-circuit): ``state`` is one of
    :data:`ATTEMPT_STATES`, ``result`` what ``perform`` returned (None after an error), and
    ``error`` the exception of a failed attempt. A feature may keep its own attributes on the
    attempt between ``before`` and ``after``.
    """

    def __init__(self, job: Any, worker: Any) -> None:
        self.job = job
        self.worker = worker
        self.state: str | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        #: The formatted traceback (or reason) of ``error``.
        self.traceback: str | None = None
        #: Keys to set in the job's meta when the outcome is written (see :meth:`write_meta`).
        self.meta_updates: dict[str, Any] = {}
        #: A ``time.monotonic()`` instant at which ``perform`` is stopped and the job
        #: cancelled (see :meth:`cancel_when`), with the reason recorded.
        self.cancel_at: float | None = None
        self.cancel_reason: str = ""

    def write_meta(self, **values: Any) -> None:
        """Set these meta keys with the attempt's outcome (in the same statement as the ack,
        completed jobs included). Values must be JSON-serialisable."""
        self.meta_updates.update(values)

    def cancel_when(self, at: float, reason: str) -> None:
        """Stop ``perform`` at the ``time.monotonic()`` instant ``at`` and cancel the job,
        recording ``reason``: the interruption timeouts use, with the same limits (Python code
        stops at once; a call blocked in C when it returns)."""
        self.cancel_at = at if self.cancel_at is None else min(self.cancel_at, at)
        self.cancel_reason = reason


class Feature:
    """Base class of job features; every method is optional.

    Subclass it, implement the moments you need, and register an instance once (for example in
    your ``AppConfig.ready``) with :func:`register_feature`.
    """

    #: Short name, used in error messages.
    name: str = ""
    #: A meta key: the feature also takes the written moments (``inserting``, ``inserted``,
    #: ``acked``) of every job whose meta has this key, whatever its worker (batches: their
    #: members may be jobs of any worker).
    meta_key: str | None = None
    #: Per-job options of ``new()`` that this feature reads (``new(args, deadline=60)``).
    #: Options nobody declares are refused, naming the close matches.
    options: tuple[str, ...] = ()

    def setup(self, worker: type) -> Any:
        """Called once per worker class. Validate the class options this feature reads and
        return its configuration for that worker, or None when the feature does not apply
        (then no other method is called for that worker's jobs). Raise
        :class:`~django_jobs.exceptions.ConfigurationError` for a bad class option."""
        return None

    def prepare(self, worker: type, args: Mapping[str, Any], options: dict[str, Any],
                config: Any) -> Mapping[str, Any]:
        """Built, before the job exists: return the args to build with (validated or
        transformed); ``options`` (the keyword arguments of ``new()``) may be changed in place.
        Raise ``InvalidJobError`` or Django's ``ValidationError`` to refuse the job."""
        return args

    def build(self, job: Any, options: Mapping[str, Any], config: Any) -> None:
        """Built, after the job exists and before it is written: set meta, change args or the
        schedule. ``options`` are the keyword arguments of ``new()``. Raise to refuse."""

    def before(self, attempt: Attempt, config: Any) -> Any:
        """Run, before ``perform``: change ``attempt.job`` if needed and return None, or return
        a result (``Snooze``, ``Cancel``, ``Discard``) to skip ``perform``. An exception fails
        the attempt like one raised by ``perform``."""
        return None

    def after(self, attempt: Attempt, config: Any) -> None:
        """Run, after ``perform`` or a short-circuit: read ``attempt.state`` and
        ``attempt.result``; add to what is written with ``attempt.write_meta``. An exception
        turns the attempt into a failure (retried, or discarded when out of attempts). Called
        for every feature of the pipeline, even when one further out short-circuited, and
        with ``attempt.state`` None when the attempt was abandoned (the node stopped; the job
        goes back to available): tidy up then, nothing more."""

    def inserting(self, jobs: list[Any], using: str) -> None:
        """Written, inside the insert's transaction, before the rows of ``jobs`` are written
        (and their ids drawn): take the locks the rows' fate depends on
        (``Engine.serialize``)."""

    def inserted(self, jobs: list[Any], using: str) -> None:
        """Written, inside the transaction that inserted ``jobs`` (those of this feature's
        workers that were written, not duplicates found by ``unique``), after the rows: write
        related rows through model managers or the engine. An exception rolls the insert
        back."""

    def acked(self, changes: list[Any], using: str) -> None:
        """Written, inside the transaction that changed the state of jobs, after the rows:
        ``changes`` are the :class:`~django_jobs.models.JobChange` records of this feature's
        workers' jobs. An exception rolls the change back (the acker writes it again later)."""


#: A worker's pipeline: (feature, its configuration for the worker), database side first.
Pipeline = tuple[tuple[Feature, Any], ...]

_lock = threading.RLock()
_features: list[Feature] = []
_pipelines: dict[type, Pipeline] = {}
#: Per worker class: the features of its pipeline that implement inserted / acked.
_implementing: dict[tuple[type, str], tuple[Feature, ...]] = {}


def _implements(feature: Feature, method: str) -> bool:
    return getattr(type(feature), method) is not getattr(Feature, method)


def implementing(worker: type, method: str) -> tuple[Feature, ...]:
    """The features of ``worker``'s pipeline implementing ``method`` (``"inserting"``,
    ``"inserted"`` or ``"acked"``), in pipeline order."""
    key = (worker, method)
    found = _implementing.get(key)
    if found is None:
        found = _implementing[key] = tuple(f for f, _ in pipeline(worker) if _implements(f, method))
    return found


#: Whether any registered feature implements inserted / acked (else nothing to look up).
_any_implement: dict[str, bool] = {"inserting": False, "inserted": False, "acked": False}
#: Per method: the features with a ``meta_key`` that implement it.
_meta_implementing: dict[str, tuple[Feature, ...]] = {method: () for method in _any_implement}


def any_implements(method: str) -> bool:
    """Whether a registered feature implements ``method`` at all."""
    return _any_implement[method]


def implementing_for_job(worker_path: str, meta: Any, method: str) -> tuple[Feature, ...]:
    """The features that take ``method`` (``inserting``, ``inserted``, ``acked``) for a job
    of worker ``worker_path`` with ``meta``: those of the worker's pipeline, then those whose
    ``meta_key`` the meta has. (A worker that cannot be imported has no pipeline; a remote
    one, under ``DJANGO_JOBS["REMOTE_WORKERS"]``, is not imported to find it.)"""
    if registry.is_remote(worker_path):
        # Another deployment's worker is never imported here; if this process defined it
        # anyway (it runs its jobs), its pipeline applies.
        worker = registry.defined_worker(worker_path)
        found = implementing(worker, method) if worker is not None else ()
    else:
        try:
            found = implementing(registry.resolve_worker(worker_path), method)
        except WorkerNotImportable:
            found = ()
    if _meta_implementing[method] and isinstance(meta, Mapping):
        extra = tuple(f for f in _meta_implementing[method]
                      if f.meta_key in meta and f not in found)
        if extra:
            return found + extra
    return found


def _registry_changed() -> None:
    _pipelines.clear()
    _implementing.clear()
    for method in _any_implement:
        _any_implement[method] = any(_implements(f, method) for f in _features)
        _meta_implementing[method] = tuple(f for f in _features
                                      if f.meta_key and _implements(f, method))


def register_feature(feature: Feature) -> Feature:
    """Add ``feature`` nearest to ``perform`` (innermost). Every worker class defined so far is
    set up at once, so a bad class option raises here, naming the class."""
    with _lock:
        if any(existing is feature for existing in _features):
            return feature
        _features.append(feature)
        _registry_changed()
        for worker in registry.workers():
            pipeline(worker)
    return feature


def unregister_feature(feature: Feature) -> None:
    """Remove ``feature`` from every pipeline (tests)."""
    with _lock:
        _features[:] = [f for f in _features if f is not feature]
        _registry_changed()


def reset_pipelines() -> None:
    """Forget every worker's pipeline: the next use sets it up again (a feature whose
    configuration changed, such as global hooks, calls this)."""
    with _lock:
        _pipelines.clear()
        _implementing.clear()


def registered_features() -> tuple[Feature, ...]:
    with _lock:
        return tuple(_features)


def feature_options() -> tuple[str, ...]:
    """Every per-job option a registered feature declares."""
    with _lock:
        return tuple(dict.fromkeys(name for f in _features for name in f.options))


def pipeline(worker: type) -> Pipeline:
    """The features that apply to ``worker`` with their configurations (set up on first use,
    then cached until the registered features change)."""
    cached = _pipelines.get(worker)
    if cached is not None:
        return cached
    with _lock:
        steps = []
        for feature in _features:
            try:
                config = feature.setup(worker)
            except ConfigurationError as exc:
                path = getattr(worker, "worker_path", worker.__qualname__)
                message = str(exc)
                raise ConfigurationError(message if message.startswith(path)
                                         else f"{path}: {message}") from None
            if config is not None:
                steps.append((feature, config))
        result = _pipelines[worker] = tuple(steps)
        return result
