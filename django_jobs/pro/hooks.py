"""Worker hooks: code run when a job is built, before it runs, and after it ran.

Three hooks, each optional:

* ``before_new(args, opts)`` (built): return ``(args, opts)``, possibly changed (``opts`` are
  the options given to ``new()``); raise to refuse the job (the error names the hook);
* ``before_process(job)`` (run, before ``perform``): return None to go on, a job to run that
  job instead, or ``Cancel``/``Discard``/``Snooze`` to skip ``perform`` with that outcome;
  raising fails the attempt like an exception from ``perform``;
* ``after_process(state, job, result)`` (run, after): ``state`` is ``"complete"``,
  ``"cancel"``, ``"discard"``, ``"error"`` or ``"snooze"``, ``result`` what ``perform``
  returned. An exception here is logged and never changes the job's outcome.

Hooks come from three places and run in this order: methods of the worker itself (implicit),
the classes listed in the worker's ``hooks = [...]`` (explicit), and hooks attached to every
worker with :func:`attach_hook` (global). A hook class may define any of the three methods; it
is instantiated once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from .. import features
from ..exceptions import ConfigurationError, InvalidJobError
from ..features import Attempt, Feature
from ..models.job import Job
from ..results import CONTROL_RESULTS

logger = logging.getLogger("django_jobs.hooks")

HOOK_METHODS = ("before_new", "before_process", "after_process")

_lock = threading.Lock()
_global: list[Any] = []


def attach_hook(hook: type | Any) -> None:
    """Run ``hook`` (a class, instantiated once, or an object) for the jobs of every worker,
    after the worker's own and listed hooks."""
    instance = _instance(hook, "attach_hook")
    with _lock:
        if not any(_same(existing, hook) for existing in _global):
            _global.append(instance)
    features.reset_pipelines()


def detach_hook(hook: type | Any) -> None:
    """Stop running a hook given to :func:`attach_hook`."""
    with _lock:
        _global[:] = [h for h in _global if not _same(h, hook)]
    features.reset_pipelines()


def _same(instance: Any, hook: Any) -> bool:
    return instance is hook or (isinstance(hook, type) and type(instance) is hook)


def _instance(hook: Any, where: str) -> Any:
    instance = hook() if isinstance(hook, type) else hook
    if not any(callable(getattr(instance, name, None)) for name in HOOK_METHODS):
        raise ConfigurationError(f"{where}: {hook!r} defines none of {', '.join(HOOK_METHODS)}")
    return instance


def _name(hook: Any) -> str:
    kind = hook if isinstance(hook, type) else type(hook)
    return f"{kind.__module__}.{kind.__qualname__}"


class Hooks(Feature):
    """The worker hooks, as a job feature nearest to ``perform``."""

    name = "hooks"

    def setup(self, worker: type) -> Any:
        listed = getattr(worker, "hooks", ())
        if isinstance(listed, (str, type)) or not isinstance(listed, (list, tuple)):
            raise ConfigurationError(f"hooks must be a list of hook classes, not {listed!r}")
        explicit = tuple(_instance(hook, f"{worker.worker_path}.hooks") for hook in listed)
        implicit = any(callable(getattr(worker, name, None)) for name in HOOK_METHODS)
        if not implicit and not explicit and not _global:
            return None
        return (implicit, explicit)

    def _hooks(self, config: tuple[bool, tuple], worker: Any, method: str) -> list[Any]:
        """The hooks defining ``method``, in order: the worker, its listed hooks, global."""
        implicit, explicit = config
        with _lock:
            attached = list(_global)
        hooks = [worker] if implicit else []
        hooks += [*explicit, *attached]
        return [hook for hook in hooks if callable(getattr(hook, method, None))]

    def prepare(self, worker: type, args: Mapping[str, Any], options: dict[str, Any],
                config: Any) -> Mapping[str, Any]:
        implicit = worker() if config[0] and callable(getattr(worker, "before_new", None)) \
            else None
        for hook in self._hooks(config, implicit, "before_new"):
            try:
                returned = hook.before_new(args, dict(options))
            except (InvalidJobError, ValidationError):
                raise
            except Exception as exc:
                raise InvalidJobError(f"before_new hook {_name(hook)} refused the job: "
                                      f"{exc}") from exc
            if (not isinstance(returned, tuple) or len(returned) != 2
                    or not isinstance(returned[0], Mapping)
                    or not isinstance(returned[1], Mapping)):
                raise InvalidJobError(f"before_new hook {_name(hook)} must return (args, opts) "
                                      f"as two dicts, not {returned!r}")
            args = returned[0]
            options.clear()
            options.update(returned[1])
        return args

    def before(self, attempt: Attempt, config: Any) -> Any:
        for hook in self._hooks(config, attempt.worker, "before_process"):
            returned = hook.before_process(attempt.job)
            if returned is None:
                continue
            if isinstance(returned, Job):
                attempt.job = returned
            elif isinstance(returned, CONTROL_RESULTS):
                return returned
            elif isinstance(returned, BaseException):
                raise returned
            else:
                raise InvalidJobError(f"before_process hook {_name(hook)} returned {returned!r}; "
                                      f"return None, a job, Cancel, Discard or Snooze, or raise")
        return None

    def after(self, attempt: Attempt, config: Any) -> None:
        if attempt.state is None:  # put back by a stopping node: not an outcome of the job
            return
        for hook in self._hooks(config, attempt.worker, "after_process"):
            try:
                hook.after_process(attempt.state, attempt.job, attempt.result)
            except Exception:
                # A hook never changes the outcome: log it and go on with the others.
                logger.exception("after_process hook %s failed for job %s (%s)", _name(hook),
                                 attempt.job.pk, attempt.state)
