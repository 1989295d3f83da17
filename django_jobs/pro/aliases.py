"""Worker aliases: jobs stored under a worker's old dotted path run on the renamed worker.

::

    class PurgeUser(Worker):
        aliases = ["myapp.workers.UserPurge"]   # the class's name before the rename

A job whose ``worker`` column names an alias runs on the class that declares it. The alias
is declared on that class only (subclasses do not inherit it). An alias that two workers claim,
or that is itself the path of an existing worker, is reported by the system checks
(``django_jobs.E010`` and ``E011``).
"""

from __future__ import annotations

from typing import Any

from .. import registry
from ..exceptions import ConfigurationError
from ..features import Feature
from ..models.job import WORKER_MAX_LENGTH


class Aliases(Feature):
    name = "aliases"

    def setup(self, worker: type) -> Any:
        aliases = worker.__dict__.get("aliases", ())
        if isinstance(aliases, str) or not isinstance(aliases, (list, tuple)):
            raise ConfigurationError(f"aliases must be a list of dotted paths, not {aliases!r}")
        for alias in aliases:
            if (not isinstance(alias, str) or "." not in alias or alias != alias.strip()
                    or len(alias) > WORKER_MAX_LENGTH):
                raise ConfigurationError(f"alias {alias!r} must be a dotted path of at most "
                                         f"{WORKER_MAX_LENGTH} characters")
            if alias == worker.worker_path:
                raise ConfigurationError(f"alias {alias!r} is the worker's own path")
        if aliases:
            registry.add_aliases(worker, aliases)
        return None  # nothing to do when jobs are built or run
