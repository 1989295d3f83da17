"""``job.unsaved_error``: the exception of the attempt being decided, for backoff, the
after_process hooks and the job features' after steps (None after an attempt that did not
fail)."""

from __future__ import annotations

import datetime

from django.test import TestCase, TransactionTestCase

from django_jobs.models import Job, JobState
from django_jobs.testing import JobsTestMixin

from .processes import RunjobsMixin
from .unsaved_error_workers import SEEN, Flaky
from .waits import wait_until


class UnsavedErrorTests(JobsTestMixin, TestCase):
    def setUp(self) -> None:
        SEEN.clear()

    def test_backoff_varies_by_the_kind_of_error(self):
        slow = Flaky.enqueue({"raise": "RateLimited"})
        fast = Flaky.enqueue({"raise": "ValueError"})
        self.drain_queue("unsaved")
        for job, seconds in ((slow, 600), (fast, 5)):
            row = Job.objects.get(pk=job.pk)
            self.assertEqual(row.state, JobState.RETRYABLE)
            delay = row.scheduled_at - row.attempted_at
            self.assertAlmostEqual(delay.total_seconds(), seconds, delta=5)

    def test_hooks_and_features_see_it_and_none_after_a_success(self):
        Flaky.enqueue({"raise": "ValueError"})
        Flaky.enqueue({})
        self.drain_queue("unsaved")
        self.assertIn(("backoff", "ValueError"), SEEN)
        self.assertIn(("after_process", "error", "ValueError"), SEEN)
        self.assertIn(("after_process", "complete", None), SEEN)

    def test_system_exit_is_an_unsaved_error_too(self):
        Flaky.enqueue({"raise": "SystemExit"})
        self.drain_queue("unsaved")
        self.assertIn(("backoff", "SystemExit"), SEEN)


class UnsavedErrorNodeTests(RunjobsMixin, TransactionTestCase):
    def test_a_node_uses_the_error_in_backoff(self):
        job = Flaky.enqueue({"raise": "RateLimited"})
        self.start_runjobs("unsaved", "--queue", "unsaved=2")
        wait_until(lambda: Job.objects.get(pk=job.pk).state == JobState.RETRYABLE, 60,
                   what="the job retryable", describe=lambda: self.runjobs_report(""))
        row = Job.objects.get(pk=job.pk)
        self.assertGreater(row.scheduled_at - row.attempted_at,
                           datetime.timedelta(seconds=590))
