"""Settings of django_jobs, read from ``settings.DJANGO_JOBS`` with defaults.

Use ``from django_jobs.conf import jobs_settings`` and read attributes (``jobs_settings.QUEUES``).
Values are cached and the cache is dropped when Django's ``setting_changed`` fires (for example
under ``override_settings``). Validation lives in :mod:`django_jobs.checks`.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "DJANGO_JOBS"

#: Every key ``DJANGO_JOBS`` accepts, with its default. Documented in docs/settings.md.
DEFAULTS: dict[str, Any] = {
    # Alias of the database (in settings.DATABASES) that holds the jobs tables.
    "DATABASE": "default",
    # Queue name -> number of jobs run at once on each node (runjobs).
    "QUEUES": {"default": 10},
    # Name of this node in attempted_by and the producer table; None means the host name.
    "NODE": None,
    # Worker processes of one runjobs (an integer, or "auto": one per core); queue limits are
    # per process.
    "PROCESSES": 1,
    # Job processes of workers with executor = "process", per runjobs process: how many at
    # most (None: one per core) and how many attempts each runs before it is replaced.
    "PROCESS_POOL": {"size": None, "max_jobs": 100},
    # Seconds running jobs get to finish when runjobs is stopped (SIGTERM/SIGINT).
    "GRACE_PERIOD": 15.0,
    # Seconds without a producer heartbeat after which the lifeline rescues its jobs.
    "RESCUE_AFTER": 15.0,
    # Pruning of finished jobs by the leader (False: off): default age in seconds, seconds
    # between passes, most rows deleted per pass, and ages per state, queue and worker
    # (django_jobs.plugins.pruner validates them and says which wins).
    "PRUNER": {"max_age": 7 * 24 * 3600, "interval": 30.0, "limit": 10_000, "by_state": {},
               "by_queue": {}, "by_worker": {}},
    # Static cron entries: (expression, worker path[, options]).
    "CRONTAB": [],
    # Time zone of the cron entries (static and dynamic) that name none.
    "CRON_TIMEZONE": "UTC",
    # Keys for encrypted args, newest first.
    "ENCRYPTION_KEYS": [],
    # None in production; "inline" or "manual" in tests (django_jobs.testing).
    "TESTING": None,
    # Dotted module prefixes of workers served by another deployment: new_job("billing.
    # workers.Invoice", ...) builds their jobs without importing them.
    "REMOTE_WORKERS": [],
}


class JobsSettings:
    """Attribute access to ``DJANGO_JOBS`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        return value if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown django_jobs setting {name!r}")
        if name not in self._cache:
            default = DEFAULTS[name]
            value = self.user_settings.get(name, default)
            if isinstance(default, dict) and name != "QUEUES" and isinstance(value, dict):
                value = {**copy.deepcopy(default), **value}
            self._cache[name] = value
        return self._cache[name]

    def reload(self) -> None:
        self._cache.clear()


jobs_settings = JobsSettings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING_NAME, "DATABASES"):
        jobs_settings.reload()
