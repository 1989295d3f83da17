"""django_jobs: background jobs for Django, stored in your database.

The public names. Everything else is internal and may change. Names that need Django's app
registry (anything touching models, ``Worker`` included) are imported on first use, so that
``INSTALLED_APPS`` can import this package before the models are ready.
"""

from importlib import import_module
from typing import Any

from .exceptions import (ConfigurationError, InvalidJobError, JobsError, UnknownOptionError,
                         WorkerNotImportable)
from .results import Cancel, Discard, Snooze

__version__ = "0.1.0"

_LAZY = {
    "Worker": "django_jobs.worker",
    "Feature": "django_jobs.features",
    "register_feature": "django_jobs.features",
    "attach_hook": "django_jobs.pro.hooks",
    "fetch_recorded": "django_jobs.pro.recorded",
    "BatchWorker": "django_jobs.pro.batch",
    "ChunkWorker": "django_jobs.pro.chunk",
    "ChunkError": "django_jobs.pro.chunk",
    "ChunkDiscard": "django_jobs.pro.chunk",
    "ChunkCancel": "django_jobs.pro.chunk",
    "ChunkSnooze": "django_jobs.pro.chunk",
    "new_batch": "django_jobs.pro.batch",
    "all_batch_jobs": "django_jobs.pro.batch",
    "stream_batch_jobs": "django_jobs.pro.batch",
    "batch_status": "django_jobs.pro.batch",
    "detach_hook": "django_jobs.pro.hooks",
    "cancel_all_jobs": "django_jobs.control",
    "cancel_job": "django_jobs.control",
    "delete_all_jobs": "django_jobs.control",
    "delete_job": "django_jobs.control",
    "pause_queue": "django_jobs.control",
    "resume_queue": "django_jobs.control",
    "retry_all_jobs": "django_jobs.control",
    "retry_job": "django_jobs.control",
    "scale_queue": "django_jobs.control",
    "start_queue": "django_jobs.control",
    "stop_queue": "django_jobs.control",
    "insert": "django_jobs.insertion",
    "insert_all": "django_jobs.insertion",
    "new_job": "django_jobs.build",
    "update_job": "django_jobs.updates",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'django_jobs' has no attribute {name!r}")


__all__ = [
    "BatchWorker",
    "Cancel",
    "ChunkCancel",
    "ChunkDiscard",
    "ChunkError",
    "ChunkSnooze",
    "ChunkWorker",
    "ConfigurationError",
    "Discard",
    "Feature",
    "InvalidJobError",
    "JobsError",
    "Snooze",
    "UnknownOptionError",
    "Worker",
    "WorkerNotImportable",
    "all_batch_jobs",
    "attach_hook",
    "batch_status",
    "cancel_all_jobs",
    "cancel_job",
    "delete_all_jobs",
    "delete_job",
    "detach_hook",
    "fetch_recorded",
    "insert",
    "insert_all",
    "new_batch",
    "new_job",
    "pause_queue",
    "register_feature",
    "resume_queue",
    "retry_all_jobs",
    "retry_job",
    "scale_queue",
    "start_queue",
    "stop_queue",
    "stream_batch_jobs",
    "update_job",
]
