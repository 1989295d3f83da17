"""Exceptions raised by django_jobs. Every one derives from :class:`JobsError`."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class JobsError(Exception):
    """Base class of every django_jobs error."""


class InvalidJobError(JobsError, ValueError):
    """A job could not be built: bad args, meta or options. Nothing was written."""


class UnknownOptionError(InvalidJobError, TypeError):
    """An option name that ``new()`` does not know; the message suggests the closest one."""


class WorkerNotImportable(InvalidJobError):
    """A worker class or path that a ``runjobs`` process could not import."""


class ConfigurationError(JobsError, ImproperlyConfigured):
    """The ``DJANGO_JOBS`` setting or a worker's class options are wrong."""
