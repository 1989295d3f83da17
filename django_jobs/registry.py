"""Worker classes by the dotted path a job stores, aliases included.

Every ``Worker`` subclass registers itself here when it is defined, under its own path and any
``aliases`` it declares (paths it was known by before a rename). The executor and the insert
path resolve a job's ``worker`` column through :func:`resolve_worker`; they never import the
``Worker`` base, which lives higher up (it inserts jobs).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Iterable

from django.utils.module_loading import import_string

from .conf import jobs_settings
from .exceptions import WorkerNotImportable
from .models.job import WORKER_MAX_LENGTH

_lock = threading.Lock()
#: Every worker class defined so far (weakly: a class defined in a test function may go).
_workers: weakref.WeakSet[type] = weakref.WeakSet()
#: Alias path -> the classes that claim it (more than one is a configuration error), weakly.
_aliases: dict[str, list[weakref.ref]] = {}


def register(worker: type) -> None:
    """Record ``worker`` under its ``worker_path`` (``Worker.__init_subclass__`` does)."""
    with _lock:
        _workers.add(worker)
    resolve_worker.cache_clear()


def add_aliases(worker: type, aliases: Iterable[str]) -> None:
    """Record that jobs stored under each of ``aliases`` run on ``worker``."""
    with _lock:
        for alias in aliases:
            # A class redefined under the same path (a reload) replaces its old self.
            claimants = [ref for ref in _aliases.get(alias, [])
                         if (c := ref()) is not None and c.worker_path != worker.worker_path]
            claimants.append(weakref.ref(worker))
            _aliases[alias] = claimants
    resolve_worker.cache_clear()


def forget(worker: type) -> None:
    """Drop ``worker`` and its aliases (a class whose definition failed)."""
    with _lock:
        _workers.discard(worker)
        for alias in list(_aliases):
            _aliases[alias] = [ref for ref in _aliases[alias] if ref() is not worker]
            if not _aliases[alias]:
                del _aliases[alias]
    resolve_worker.cache_clear()


def is_worker(value: object) -> bool:
    """Whether ``value`` is a worker class (a ``Worker`` subclass)."""
    return isinstance(value, type) and value in _workers


def defined_worker(path: str) -> type | None:
    """The worker class defined in this process under ``path`` (not an alias), or None;
    nothing is imported."""
    with _lock:
        return next((worker for worker in _workers if worker.worker_path == path), None)


def workers() -> list[type]:
    """Every worker class defined so far (and still alive), by path."""
    with _lock:
        return sorted(_workers, key=lambda worker: worker.worker_path)


def aliases() -> dict[str, list[type]]:
    """Alias path -> the worker classes (still alive) that claim it."""
    with _lock:
        found = {alias: [c for ref in refs if (c := ref()) is not None]
                 for alias, refs in _aliases.items()}
    return {alias: classes for alias, classes in found.items() if classes}


def _by_alias(path: str) -> type | None:
    claimants = aliases().get(path, [])
    if len(claimants) > 1:
        names = " and ".join(c.worker_path for c in claimants)
        raise WorkerNotImportable(f"worker {path} is an alias claimed by {names}; an alias "
                                  f"must name one worker (check django_jobs.E010)")
    return claimants[0] if claimants else None


def check_path(path: object) -> str:
    """``path`` if it can name a worker another process imports (a dotted path of at most
    ``WORKER_MAX_LENGTH`` characters, at module level); raise :class:`WorkerNotImportable`."""
    if not isinstance(path, str) or "." not in path or len(path) > WORKER_MAX_LENGTH:
        raise WorkerNotImportable(f"worker must be a dotted path of at most "
                                  f"{WORKER_MAX_LENGTH} characters, not {path!r}")
    if "<locals>" in path or path.startswith("__main__."):
        raise WorkerNotImportable(
            f"worker {path} is not importable by another process: define it at module level "
            f"in an importable module")
    return path


def is_remote(path: str) -> bool:
    """Whether ``path`` is under one of ``DJANGO_JOBS["REMOTE_WORKERS"]``: a worker that
    another deployment runs, whose jobs this one builds without importing it."""
    prefixes = jobs_settings.REMOTE_WORKERS
    if not isinstance(prefixes, (list, tuple)):
        return False  # a malformed setting is reported by check django_jobs.E021
    return any(isinstance(prefix, str) and prefix
               and (path == prefix or path.startswith(prefix + "."))
               for prefix in prefixes)


@functools.lru_cache(maxsize=4096)
def resolve_worker(path: str) -> type:
    """The worker class for the dotted ``path`` a job stores, or the class that lists ``path``
    in its ``aliases``; raise :class:`WorkerNotImportable` with the reason."""
    check_path(path)
    try:
        worker = import_string(path)
    except ImportError as exc:
        aliased = _by_alias(path)
        if aliased is not None:
            return aliased
        raise WorkerNotImportable(f"worker {path} cannot be imported: {exc}") from None
    except Exception as exc:
        # The module exists but fails while it runs (a SyntaxError, a setting it reads that is
        # missing in this deploy): the same for the job as a worker that is not there.
        raise WorkerNotImportable(f"worker {path} cannot be imported: its module raised "
                                  f"{type(exc).__name__}: {exc}") from None
    if not is_worker(worker):
        aliased = _by_alias(path)
        if aliased is not None:
            return aliased
        raise WorkerNotImportable(f"{path} is not a django_jobs.Worker subclass")
    return worker


def worker_class(worker: type | str) -> type:
    """The worker class for a class or a dotted path, checked to be importable by its path."""
    if isinstance(worker, str):
        return resolve_worker(worker)
    if is_worker(worker):
        if resolve_worker(worker.worker_path) is not worker:
            raise WorkerNotImportable(f"worker {worker.worker_path} imports as another object")
        return worker
    raise WorkerNotImportable(f"worker must be a Worker subclass or its dotted path, "
                              f"not {worker!r}")
