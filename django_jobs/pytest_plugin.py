"""pytest fixtures for django_jobs, loaded automatically when django_jobs is installed.

The helpers themselves are plain functions in :mod:`django_jobs.testing`; these fixtures give
them to tests without imports and switch testing modes for one test. Database access still
comes from your own setup (for example pytest-django's ``db`` / ``transactional_db``)::

    def test_signup_sends_mail(client, db, jobs):
        client.post("/signup/", {"email": "ada@example.com"})
        jobs.assert_enqueued(worker="accounts.workers.WelcomeMailer",
                             args={"email": "ada@example.com"})

    def test_mail_is_rendered(inline_jobs, db):
        job = WelcomeMailer.enqueue({"email": "ada@example.com"})   # ran already
        assert job.state == "completed"
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest


@pytest.fixture
def jobs() -> SimpleNamespace:
    """The testing helpers: ``assert_enqueued``, ``assert_not_enqueued``, ``all_enqueued``,
    ``perform_job``, ``drain_queue``, ``with_testing_mode`` and ``ANY``."""
    from django_jobs import testing  # pytest loads this plugin before Django is set up

    return SimpleNamespace(**{name: getattr(testing, name) for name in (
        "ANY", "all_enqueued", "assert_enqueued", "assert_not_enqueued", "drain_queue",
        "perform_job", "with_testing_mode")})


@pytest.fixture
def inline_jobs() -> Iterator[None]:
    """Run every job inserted during the test at once, in the test's thread."""
    from django_jobs.testing import with_testing_mode  # loaded before Django is set up

    with with_testing_mode("inline"):
        yield


@pytest.fixture
def manual_jobs() -> Iterator[None]:
    """Insert jobs during the test but run none (assert on them, or drain queues)."""
    from django_jobs.testing import with_testing_mode  # loaded before Django is set up

    with with_testing_mode("manual"):
        yield
