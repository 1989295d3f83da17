"""Testing helpers, part 2: ``perform_job`` (unit-testing a worker without a queue)."""

import datetime
import decimal
import gc
import uuid
import warnings

from django.test import SimpleTestCase

import django_jobs
from django_jobs import (Cancel, Discard, InvalidJobError, Snooze, UnknownOptionError, Worker,
                         WorkerNotImportable)
from django_jobs.models import Job
from django_jobs.signals import job_exception
from django_jobs.testing import JobsTestCase, perform_job

from . import testing_workers as w


class PerformJobTests(JobsTestCase):
    def setUp(self):
        w.performed.clear()

    def test_runs_perform_now_and_returns_its_result(self):
        self.assertEqual(perform_job(w.RecordWorker, {"value": 5}), 5)
        self.assertIsNone(perform_job(w.RecordWorker))
        self.assertEqual(w.performed.args(), [{"value": 5}, {}])
        self.assertEqual(self.perform_job(w.MailerWorker, {"email": "ada@example.com"}),
                         {"sent_to": "ada@example.com"})

    def test_worker_by_dotted_path(self):
        self.assertEqual(perform_job("tests.testing_workers.RecordWorker", {"value": "x"}), "x")

    def test_nothing_is_written(self):
        perform_job(w.RecordWorker, {"value": 1})
        self.assertEqual(Job.objects.count(), 0)

    def test_the_job_is_built_as_new_builds_it(self):
        seen = perform_job(w.JobEchoWorker, {}, queue="reports", priority=3, max_attempts=4,
                           meta={"by": 7}, tags=[" a ", "b", "a"])
        self.assertEqual(seen, {"attempt": 1, "state": "executing", "queue": "reports",
                                "priority": 3, "meta": {"by": 7}, "tags": ["a", "b"],
                                "pk": None, "max_attempts": 4})
        # Class options are the defaults, as for new().
        self.assertEqual(perform_job(w.JobEchoWorker)["queue"], "testing")
        mailer = w.MailerWorker.new({"email": "a@example.com"})
        self.assertEqual((mailer.queue, mailer.max_attempts, mailer.tags),
                         ("mailers", 3, ["mail"]))

    def test_args_reach_perform_after_a_json_round_trip(self):
        at = datetime.datetime(2026, 1, 31, 12, 30, tzinfo=datetime.UTC)
        ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
        args = {"pair": (1, 2), "at": at, "day": at.date(), "ident": ident,
                "price": decimal.Decimal("9.50"), "by_id": {7: (8,)}}
        self.assertEqual(perform_job(w.ArgsTypesWorker, args),
                         {"pair": "list", "at": "str", "day": "str", "ident": "str",
                          "price": "str", "by_id": "dict"})
        perform_job(w.RecordWorker, args)
        self.assertEqual(w.performed.args()[-1],
                         {"pair": [1, 2], "at": "2026-01-31T12:30:00Z", "day": "2026-01-31",
                          "ident": "12345678-1234-5678-1234-567812345678", "price": "9.50",
                          "by_id": {"7": [8]}})

    def test_args_and_options_are_validated_like_new(self):
        with self.assertRaisesMessage(InvalidJobError, "args['when'] is of type "):
            perform_job(w.RecordWorker, {"when": object()})
        with self.assertRaisesMessage(InvalidJobError, "args must be a dict"):
            perform_job(w.RecordWorker, [1, 2])
        with self.assertRaisesMessage(InvalidJobError, "which JSON cannot hold"):
            perform_job(w.RecordWorker, {"x": float("nan")})
        with self.assertRaisesMessage(UnknownOptionError, "did you mean 'priority'?"):
            perform_job(w.RecordWorker, {}, priorty=1)
        with self.assertRaises(InvalidJobError):
            perform_job(w.RecordWorker, {}, priority=12)
        with self.assertRaises(InvalidJobError):
            perform_job(w.RecordWorker, {}, meta=[1])
        self.assertEqual(w.performed.items, [])

    def test_the_worker_must_be_a_worker(self):
        with self.assertRaisesMessage(WorkerNotImportable, "not a django_jobs.Worker subclass"):
            perform_job("tests.testing_workers.NotAWorker", {})
        with self.assertRaises(WorkerNotImportable):
            perform_job(w.NotAWorker, {})
        with self.assertRaisesMessage(WorkerNotImportable, "cannot be imported"):
            perform_job("tests.testing_workers.Missing", {})
        with self.assertRaises(WorkerNotImportable):
            perform_job("nodots", {})

    def test_a_worker_defined_in_a_function_is_refused(self):
        class LocalWorker(Worker):
            def perform(self, job):
                return 1

        with self.assertRaisesMessage(WorkerNotImportable, "module level"):
            perform_job(LocalWorker, {})

    def test_valid_results_are_returned_as_they_are(self):
        self.assertEqual(perform_job(w.SnoozeWorker), Snooze(60))
        self.assertEqual(perform_job(w.CancelWorker), Cancel("no longer wanted"))
        self.assertEqual(perform_job(w.DiscardWorker), Discard("bad input"))
        self.assertEqual(perform_job(w.RecordWorker, {"value": [1, {"a": None}]}),
                         [1, {"a": None}])

    def test_returning_a_class_is_refused(self):
        with self.assertRaisesMessage(InvalidJobError, "returned the class"):
            perform_job(w.ReturnsClassWorker)

    def test_returning_a_coroutine_from_a_sync_perform_is_refused(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "never awaited": see below
            with self.assertRaisesMessage(InvalidJobError, "was an await or a return missing"):
                perform_job(w.ReturnsCoroutineWorker)
            gc.collect()

    def test_returning_a_generator_is_refused(self):
        with self.assertRaisesMessage(InvalidJobError, "instead of a value"):
            perform_job(w.ReturnsGeneratorWorker)

    def test_a_refused_coroutine_is_closed(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with self.assertRaises(InvalidJobError):
                perform_job(w.ReturnsCoroutineWorker)
            gc.collect()
        self.assertEqual([str(warning.message) for warning in caught], [])

    def test_exceptions_propagate(self):
        with self.assertRaisesMessage(ValueError, "boom 3"):
            perform_job(w.FailWorker, {"n": 3})
        with self.assertRaisesMessage(KeyError, "async boom"):
            perform_job(w.AsyncFailWorker)

    def test_async_workers(self):
        self.assertEqual(perform_job(w.AsyncRecordWorker, {"value": 2}), {"async": 2})
        self.assertEqual(perform_job("tests.testing_workers.AsyncRecordWorker"),
                         {"async": None})
        self.assertEqual(w.performed.args(), [{"value": 2}, {}])

    def test_an_existing_job(self):
        job = w.RecordWorker.enqueue({"value": 7})
        self.assertEqual(perform_job(job), 7)
        self.assertEqual(perform_job(Job.objects.get(pk=job.pk)), 7)
        # Performing does not touch the row.
        row = Job.objects.get(pk=job.pk)
        self.assertEqual((row.state, row.attempt, row.attempted_at), ("available", 0, None))
        # An unsaved job built by new() works too, with what the worker sees of it.
        seen = self.perform_job(w.JobEchoWorker.new({}, priority=5))
        self.assertEqual((seen["attempt"], seen["priority"], seen["pk"]), (1, 5, None))
        stored = django_jobs.insert(w.JobEchoWorker.new({}, queue="reports"))
        self.assertEqual(perform_job(stored)["pk"], stored.pk)

    def test_an_existing_job_object_is_left_as_it_was(self):
        job = w.RecordWorker.enqueue({"value": 1})
        perform_job(job)
        self.assertEqual((job.state, job.attempt, job.attempted_by), ("available", 0, None))

    def test_an_existing_job_takes_no_args_or_options(self):
        job = w.RecordWorker.new({"value": 1})
        with self.assertRaises(TypeError):
            perform_job(job, {"value": 2})
        with self.assertRaises(TypeError):
            perform_job(job, priority=2)


class PerformJobWithoutDatabaseTests(SimpleTestCase):
    """perform_job needs no database: a worker can be unit-tested in a SimpleTestCase."""

    def test_no_queries(self):
        self.assertEqual(perform_job(w.RecordWorker, {"value": 1}), 1)
        self.assertEqual(perform_job(w.AsyncRecordWorker, {"value": 1}), {"async": 1})


class PerformJobAttemptTests(JobsTestCase):
    """``perform_job(..., attempt=N)``: the job runs as its Nth attempt, and what follows a
    failure is decided for that attempt."""

    def setUp(self):
        w.AttemptWorker.seen.clear()
        self.outcomes = []
        job_exception.connect(self.exception, sender=w.AttemptWorker)
        self.addCleanup(job_exception.disconnect, self.exception, sender=w.AttemptWorker)

    def exception(self, sender, job, state, **kwargs):
        self.outcomes.append((job.attempt, state, job.errors))

    def test_perform_sees_the_attempt(self):
        self.assertEqual(perform_job(w.AttemptWorker, {"ok": True}), 1)
        self.assertEqual(perform_job(w.AttemptWorker, {"ok": True}, attempt=2), 2)
        self.assertEqual(self.perform_job(w.AttemptWorker, {"ok": True}, attempt=3), 3)

    def test_a_failure_before_the_last_attempt_is_retried_with_that_attempts_backoff(self):
        with self.assertRaisesMessage(ValueError, "attempt 2 failed"):
            perform_job(w.AttemptWorker, {}, attempt=2)
        self.assertEqual(w.AttemptWorker.seen, [("perform", 2), ("backoff", 2)])
        self.assertEqual(self.outcomes, [(2, "retryable", [])])

    def test_a_failure_at_the_last_attempt_is_discarded(self):
        with self.assertRaisesMessage(ValueError, "attempt 3 failed"):
            perform_job(w.AttemptWorker, {}, attempt=3)
        self.assertEqual(w.AttemptWorker.seen, [("perform", 3)])  # no backoff: no retry
        self.assertEqual(self.outcomes, [(3, "discarded", [])])
        # max_attempts given per job moves the last attempt.
        with self.assertRaises(ValueError):
            perform_job(w.AttemptWorker, {}, max_attempts=5, attempt=3)
        self.assertEqual(self.outcomes[-1][:2], (3, "retryable"))

    def test_an_existing_job_at_an_attempt(self):
        job = w.AttemptWorker.new({"ok": True})
        self.assertEqual(perform_job(job, attempt=3), 3)
        self.assertEqual(job.attempt, 0)  # the caller's job is left as it was

    def test_an_attempt_out_of_range_is_refused(self):
        for attempt in (0, 4, -1, "2", True, 1.0):
            with self.subTest(attempt=attempt), self.assertRaisesMessage(
                    InvalidJobError, "attempt must be an integer from 1 to the job's "
                                     "max_attempts (3)"):
                perform_job(w.AttemptWorker, {"ok": True}, attempt=attempt)
        self.assertEqual(w.AttemptWorker.seen, [])
