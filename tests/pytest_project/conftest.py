"""The conftest.py of docs/testing.md ("pytest"), as a project would write it.

django_jobs' pytest plugin is loaded by its entry point: the fixtures ``jobs``,
``inline_jobs`` and ``manual_jobs`` need no import. Database access comes from pytest-django
(``db``, ``transactional_db`` or ``@pytest.mark.django_db``).
"""

import logging

import pytest


@pytest.fixture(autouse=True)
def _jobs_are_manual(manual_jobs):
    """Every test inserts jobs for real but runs none, and runjobs refuses to start; a test
    runs jobs when it asks: ``jobs.perform_job``, ``jobs.drain_queue`` or ``inline_jobs``."""


@pytest.fixture(autouse=True)
def _quiet_job_logs():
    """One log line per job outcome is useful in production, noise in a test run."""
    logger = logging.getLogger("django_jobs")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
