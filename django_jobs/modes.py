"""The testing mode in force (``DJANGO_JOBS["TESTING"]``, or a ``with_testing_mode`` block).

Kept apart from :mod:`django_jobs.testing` so that the insert path can ask cheaply, without
importing test machinery.
"""

from __future__ import annotations

import contextvars

from .conf import jobs_settings

MODES = ("inline", "manual")
#: Set by ``with_testing_mode``; "production" stands for an explicit None.
override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "django_jobs_testing_mode", default=None)


def current() -> str | None:
    """``"inline"``, ``"manual"`` or None (production behaviour)."""
    mode = override.get()
    if mode is None:
        return jobs_settings.TESTING
    return None if mode == "production" else mode
