"""Testing helpers, part 3: ``drain_queue`` (run a queue's jobs in the test, as runjobs would).

The same tests run on a ``TestCase`` and on a ``TransactionTestCase``.
"""

import datetime
import logging
from unittest import mock

from django.test import TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs import signals
from django_jobs.engines import get_engine
from django_jobs.models import Job
from django_jobs.testing import JobsTestCase, JobsTestMixin, drain_queue

from . import testing_workers as w
from .helpers import reload

ZERO = {"completed": 0, "failed": 0, "discarded": 0, "cancelled": 0, "snoozed": 0}


def counts(**nonzero):
    return {**ZERO, **nonzero}


class Draining:
    """The tests; mixed into a TestCase and a TransactionTestCase below."""

    def setUp(self):
        super().setUp()
        w.performed.clear()
        # Failed attempts log a warning each; keep the test output quiet.
        logger = logging.getLogger("django_jobs.executor")
        level = logger.level
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, level)

    def test_counts_each_outcome_and_writes_it(self):
        done = w.RecordWorker.enqueue({"n": 1})
        failed = w.FailWorker.enqueue({"n": 2})
        exhausted = w.FailWorker.enqueue({"n": 3}, max_attempts=1)
        snoozed = w.SnoozeWorker.enqueue({})
        cancelled = w.CancelWorker.enqueue({})
        discarded = w.DiscardWorker.enqueue({})
        done_async = w.AsyncRecordWorker.enqueue({"value": 4})
        failed_async = w.AsyncFailWorker.enqueue({})
        before = timezone.now()
        self.assertEqual(self.drain_queue("testing"),
                         counts(completed=2, failed=2, discarded=2, cancelled=1, snoozed=1))
        for job in (done, done_async):
            row = reload(job)
            self.assertEqual((row.state, row.attempt, row.errors), ("completed", 1, []))
            self.assertGreaterEqual(row.completed_at, before)
            self.assertEqual(row.attempted_by, ["test", "drain_queue"])
        row = reload(failed)
        self.assertEqual((row.state, row.attempt), ("retryable", 1))
        self.assertIn("Traceback (most recent call last)", row.errors[0]["error"])
        self.assertIn("ValueError: boom 2", row.errors[0]["error"])
        self.assertGreater(row.scheduled_at, before + datetime.timedelta(seconds=15))
        self.assertIn("KeyError: 'async boom'", reload(failed_async).errors[0]["error"])
        row = reload(exhausted)
        self.assertEqual(row.state, "discarded")
        self.assertIsNotNone(row.discarded_at)
        self.assertIn("ValueError: boom 3", row.errors[0]["error"])
        row = reload(discarded)
        self.assertEqual(row.state, "discarded")
        self.assertEqual(row.errors[0]["error"], "Discarded: bad input")
        row = reload(cancelled)
        self.assertEqual(row.state, "cancelled")
        self.assertEqual(row.errors[0]["error"], "Cancelled: no longer wanted")
        row = reload(snoozed)
        self.assertEqual((row.state, row.meta, row.max_attempts), ("scheduled", {"snoozed": 1}, 21))
        self.assertGreater(row.scheduled_at, before + datetime.timedelta(seconds=59))
        # Nothing is left available or executing.
        self.assertFalse(Job.objects.filter(state__in=["available", "executing"]).exists())

    def test_an_empty_queue(self):
        self.assertEqual(drain_queue("testing"), ZERO)
        self.assertEqual(drain_queue("nowhere", with_scheduled=True, with_recursion=True), ZERO)

    def test_only_the_given_queue(self):
        w.RecordWorker.enqueue({"n": 1})
        other = w.RecordWorker.enqueue({"n": 2}, queue="other")
        self.assertEqual(drain_queue("testing"), counts(completed=1))
        self.assertEqual(reload(other).state, "available")
        self.assertEqual(drain_queue("other"), counts(completed=1))
        self.assertEqual(w.performed.args(), [{"n": 1}, {"n": 2}])

    def test_jobs_run_in_fetch_order(self):
        # Priority first, then scheduled_at, then id: the order runjobs fetches in.
        for n, priority in enumerate([3, 0, 9, 0, 5]):
            w.RecordWorker.enqueue({"n": n}, priority=priority)
        w.OtherWorker.enqueue({"n": 5}, scheduled_at=timezone.now() - datetime.timedelta(hours=1))
        self.assertEqual(drain_queue("testing"), counts(completed=6))
        self.assertEqual([args["n"] for args in w.performed.args()], [5, 1, 3, 0, 4, 2])

    def test_jobs_run_in_this_thread(self):
        import threading

        w.RecordWorker.enqueue({})
        w.AsyncRecordWorker.enqueue({})
        drain_queue("testing")
        self.assertEqual(w.performed.threads, [threading.get_ident()] * 2)

    def test_with_limit(self):
        for n in range(5):
            w.RecordWorker.enqueue({"n": n}, priority=n % 2)
        self.assertEqual(drain_queue("testing", with_limit=0), ZERO)
        self.assertEqual(drain_queue("testing", with_limit=2), counts(completed=2))
        self.assertEqual([args["n"] for args in w.performed.args()], [0, 2])
        self.assertEqual(len(self.all_enqueued(queue="testing")), 3)
        self.assertEqual(drain_queue("testing", with_limit=10), counts(completed=3))
        self.assertEqual([args["n"] for args in w.performed.args()], [0, 2, 4, 1, 3])

    def test_with_limit_counts_every_outcome(self):
        w.FailWorker.enqueue({"n": 1})
        w.CancelWorker.enqueue({})
        w.RecordWorker.enqueue({})
        self.assertEqual(drain_queue("testing", with_limit=2), counts(failed=1, cancelled=1))

    def test_without_recursion_jobs_inserted_by_jobs_wait(self):
        w.ChainWorker.enqueue({"depth": 2})
        self.assertEqual(drain_queue("testing"), counts(completed=1))
        child = self.assertEnqueued(worker=w.ChainWorker, args={"depth": 1})
        # Left as inserted: never claimed, no attempt spent.
        self.assertEqual((child.state, child.attempt, child.attempted_at, child.attempted_by),
                         ("available", 0, None, None))
        self.assertEqual(drain_queue("testing"), counts(completed=1))
        self.assertEnqueued(worker=w.ChainWorker, args={"depth": 0})

    def test_with_recursion(self):
        w.ChainWorker.enqueue({"depth": 3})
        w.ParentWorker.enqueue({"n": "p", "children": 2}, priority=1)
        self.assertEqual(drain_queue("testing", with_recursion=True), counts(completed=7))
        # One job per fetch, in fetch order: each fetch takes the first available job by
        # priority, so the chain's children (priority 0) come before the parent (priority 1).
        self.assertEqual(w.performed.args(), [
            {"depth": 3}, {"depth": 2}, {"depth": 1}, {"depth": 0},
            {"n": "p", "children": 2}, {"child_of": "p", "n": 0}, {"child_of": "p", "n": 1}])
        self.assertNotEnqueued()

    def test_with_recursion_stays_on_its_queue(self):
        w.ParentWorker.enqueue({"n": 1, "children": 2, "queue": "other"})
        self.assertEqual(drain_queue("testing", with_recursion=True), counts(completed=1))
        self.assertEqual(len(self.all_enqueued(queue="other", args={"child_of": 1})), 2)

    def test_with_recursion_and_limit(self):
        w.ChainWorker.enqueue({"depth": 5})
        self.assertEqual(drain_queue("testing", with_recursion=True, with_limit=3),
                         counts(completed=3))
        self.assertEnqueued(worker=w.ChainWorker, args={"depth": 2})

    def test_with_scheduled(self):
        now = timezone.now()
        w.RecordWorker.enqueue({"n": "now"})
        w.RecordWorker.enqueue({"n": "in 1 h"}, scheduled_at=now + datetime.timedelta(hours=1))
        w.RecordWorker.enqueue({"n": "in 3 h"}, scheduled_at=now + datetime.timedelta(hours=3))
        self.assertEqual(drain_queue("testing"), counts(completed=1))
        self.assertEqual(len(self.all_enqueued(state="scheduled")), 2)
        # A datetime: jobs due by then.
        self.assertEqual(drain_queue("testing", with_scheduled=now + datetime.timedelta(hours=2)),
                         counts(completed=1))
        self.assertEnqueued(args={"n": "in 3 h"})
        # True: every scheduled job.
        self.assertEqual(drain_queue("testing", with_scheduled=True), counts(completed=1))
        self.assertEqual([args["n"] for args in w.performed.args()], ["now", "in 1 h", "in 3 h"])
        self.assertNotEnqueued()

    def test_with_scheduled_retries_failures_until_discarded(self):
        job = w.FailWorker.enqueue({"n": 1}, max_attempts=3)
        self.assertEqual(drain_queue("testing", with_scheduled=True),
                         counts(failed=2, discarded=1))
        row = reload(job)
        self.assertEqual((row.state, row.attempt), ("discarded", 3))
        self.assertEqual([e["attempt"] for e in row.errors], [1, 2, 3])

    def test_without_with_scheduled_a_failure_waits_for_its_retry(self):
        job = w.FailWorker.enqueue({"n": 1}, max_attempts=3)
        self.assertEqual(drain_queue("testing"), counts(failed=1))
        self.assertEqual(drain_queue("testing"), ZERO)
        self.assertEqual(reload(job).state, "retryable")
        # A retry due later than the datetime stays put.
        self.assertEqual(drain_queue("testing", with_scheduled=timezone.now()), ZERO)

    def test_a_job_that_always_snoozes_with_scheduled_needs_a_limit(self):
        job = w.SnoozeWorker.enqueue({})
        self.assertEqual(drain_queue("testing", with_scheduled=True, with_limit=3),
                         counts(snoozed=3))
        row = reload(job)
        self.assertEqual((row.state, row.attempt, row.max_attempts, row.meta),
                         ("scheduled", 3, 23, {"snoozed": 3}))

    def test_with_safety_off_an_exception_propagates(self):
        w.RecordWorker.enqueue({"n": 1}, priority=0)
        w.FailWorker.enqueue({"n": 2}, priority=1)
        w.RecordWorker.enqueue({"n": 3}, priority=2)
        with self.assertRaisesMessage(ValueError, "boom 2"):
            drain_queue("testing", with_safety=False)
        self.assertEqual([args["n"] for args in w.performed.args()], [1, 2])  # stopped there
        self.assertEqual(reload(Job.objects.get(args__n=1)).state, "completed")

    def test_with_safety_off_the_jobs_not_run_stay_enqueued(self):
        w.FailWorker.enqueue({"n": 1}, priority=0)
        w.RecordWorker.enqueue({"n": 2}, priority=1)
        with self.assertRaises(ValueError):
            drain_queue("testing", with_safety=False)
        self.assertEnqueued(args={"n": 2})
        self.assertEqual(drain_queue("testing"), counts(completed=1))

    def test_with_safety_off_async_exception_propagates(self):
        w.AsyncFailWorker.enqueue({})
        with self.assertRaisesMessage(KeyError, "async boom"):
            drain_queue("testing", with_safety=False)

    def test_with_safety_off_and_nothing_failing(self):
        w.RecordWorker.enqueue({})
        w.CancelWorker.enqueue({})
        self.assertEqual(drain_queue("testing", with_safety=False),
                         counts(completed=1, cancelled=1))

    def test_with_safety_off_the_failure_is_still_recorded(self):
        job = w.FailWorker.enqueue({"n": 1})
        with self.assertRaises(ValueError):
            drain_queue("testing", with_safety=False)
        row = reload(job)
        self.assertEqual((row.state, row.attempt), ("retryable", 1))
        self.assertIn("ValueError: boom 1", row.errors[0]["error"])

    def test_the_runtime_executor_runs_the_jobs(self):
        # Same path as runjobs: the job signals are sent, with the outcome.
        seen = []

        def started(sender, job, **kwargs):
            seen.append(("started", sender.__name__, job.state))

        def stopped(sender, job, state, **kwargs):
            seen.append(("stopped", sender.__name__, state))

        def exception(sender, job, exception, state, **kwargs):
            seen.append(("exception", type(exception).__name__, state))

        for signal, receiver in ((signals.job_started, started), (signals.job_stopped, stopped),
                                 (signals.job_exception, exception)):
            signal.connect(receiver)
            self.addCleanup(signal.disconnect, receiver)
        w.RecordWorker.enqueue({}, priority=0)
        w.FailWorker.enqueue({}, priority=1)
        drain_queue("testing")
        self.assertEqual(seen, [("started", "RecordWorker", "executing"),
                                ("stopped", "RecordWorker", "completed"),
                                ("started", "FailWorker", "executing"),
                                ("exception", "ValueError", "retryable"),
                                ("stopped", "FailWorker", "retryable")])

    def test_an_unimportable_worker_fails_like_in_runjobs(self):
        job = w.RecordWorker.enqueue({})
        Job.objects.filter(pk=job.pk).update(worker="tests.testing_workers.Gone")
        self.assertEqual(drain_queue("testing", with_safety=False), counts(failed=1))
        self.assertIn("cannot be imported", reload(job).errors[0]["error"])

    def test_bulk_inserted_jobs(self):
        django_jobs.insert_all([w.RecordWorker.new({"n": n}) for n in range(150)])
        self.assertEqual(drain_queue("testing"), counts(completed=150))
        self.assertEqual([args["n"] for args in w.performed.args()], list(range(150)))

    def test_with_limit_and_a_higher_priority_job_inserted_by_a_job(self):
        w.ParentWorker.enqueue({"n": 1, "children": 1, "child_priority": 0}, priority=1)
        w.RecordWorker.enqueue({"n": 2}, priority=1)
        engine_class = type(get_engine())
        fetch = engine_class.fetch_jobs
        calls = []

        def guarded(engine, *args, **kwargs):
            calls.append(1)
            if len(calls) > 50:
                raise RuntimeError("drain_queue is looping: 50 fetches")
            return fetch(engine, *args, **kwargs)

        with mock.patch.object(engine_class, "fetch_jobs", guarded):
            self.assertEqual(drain_queue("testing", with_limit=5), counts(completed=2))
        self.assertEnqueued(args={"child_of": 1})


class DrainTestCase(Draining, JobsTestCase):
    """Inside a transaction rolled back after each test."""


class DrainTransactionTestCase(Draining, JobsTestMixin, TransactionTestCase):
    """With real commits."""
