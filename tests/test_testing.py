"""Testing helpers, part 1: ``assertEnqueued``, ``assertNotEnqueued`` and ``all_enqueued``.

The same tests run on a ``TestCase`` (each test inside a transaction that is rolled back) and
on a ``TransactionTestCase`` (real commits); waiting with ``timeout`` for a job inserted by
another thread needs commits, so it is tested on ``TransactionTestCase`` only.

Other parts: tests/test_testing_perform.py (``perform_job``), tests/test_testing_drain.py
(``drain_queue``), tests/test_testing_modes.py (inline and manual modes) and
tests/test_testing_pytest.py (the pytest plugin, run in a subprocess).
"""

import datetime
import decimal
import threading
import time
import unittest
import uuid

from django.db import transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobError
from django_jobs.models import Job
from django_jobs.testing import (ANY, JobsTestCase, JobsTestMixin, all_enqueued,
                                 assert_enqueued, assert_not_enqueued)

from . import testing_workers as w
from .helpers import set_state
from .waits import in_thread, join_all

RECORD = "tests.testing_workers.RecordWorker"
OTHER = "tests.testing_workers.OtherWorker"


class EnqueuedAssertions:
    """The tests; mixed into a TestCase and a TransactionTestCase below."""

    def setUp(self):
        super().setUp()
        w.performed.clear()

    # -- what matches ---------------------------------------------------------------------

    def test_worker_as_class_or_dotted_path(self):
        job = w.RecordWorker.enqueue({"n": 1})
        self.assertEqual(self.assertEnqueued(worker=w.RecordWorker).pk, job.pk)
        self.assertEqual(self.assertEnqueued(worker=RECORD).pk, job.pk)
        self.assertNotEnqueued(worker=w.OtherWorker)
        self.assertNotEnqueued(worker=OTHER)
        with self.assertRaises(TypeError):
            self.assertEnqueued(worker=42)
        with self.assertRaises(TypeError):
            self.assertEnqueued(worker=w.NotAWorker)

    def test_assertions_return_the_job_and_nothing_runs(self):
        job = w.RecordWorker.enqueue({"n": 1})
        found = self.assertEnqueued(worker=w.RecordWorker, args={"n": 1})
        self.assertIsInstance(found, Job)
        self.assertEqual((found.pk, found.state, found.attempt), (job.pk, "available", 0))
        self.assertIsNone(self.assertNotEnqueued(worker=w.OtherWorker))
        self.assertEqual(w.performed.items, [])

    def test_available_scheduled_and_suspended_count_as_enqueued(self):
        available = w.RecordWorker.enqueue({"n": "available"})
        scheduled = w.RecordWorker.enqueue({"n": "scheduled"}, schedule_in=3600)
        suspended = w.RecordWorker.enqueue({"n": "suspended"})
        set_state(suspended, "suspended")
        self.assertEqual(scheduled.state, "scheduled")
        for job in (available, scheduled, suspended):
            self.assertEqual(self.assertEnqueued(args={"n": job.args["n"]}).pk, job.pk)
        self.assertEqual(len(self.all_enqueued(worker=w.RecordWorker)), 3)

    def test_other_states_do_not_count(self):
        now = timezone.now()
        states = {"executing": {"attempt": 1, "attempted_at": now},
                  "retryable": {"attempt": 1}, "completed": {"attempt": 1, "completed_at": now},
                  "discarded": {"attempt": 1, "discarded_at": now},
                  "cancelled": {"cancelled_at": now}}
        for state, fields in states.items():
            set_state(w.RecordWorker.enqueue({"n": state}), state, **fields)
        for state in states:
            self.assertNotEnqueued(args={"n": state})
        self.assertEqual(self.all_enqueued(), [])
        # state= looks elsewhere on purpose.
        self.assertEqual([j.args for j in all_enqueued(state="completed")], [{"n": "completed"}])
        self.assertEqual(len(all_enqueued(state=["retryable", "discarded"])), 2)
        self.assertEqual(self.assertEnqueued(state="cancelled").args, {"n": "cancelled"})

    def test_queue_priority_tags(self):
        w.RecordWorker.enqueue({"n": 1}, queue="reports", priority=3, tags=["a", "b", "c"])
        self.assertEnqueued(queue="reports")
        self.assertNotEnqueued(queue="testing")
        self.assertEnqueued(priority=3)
        self.assertNotEnqueued(priority=0)
        self.assertEnqueued(tags=["a"])
        self.assertEnqueued(tags=["c", "a"])            # all present, any order
        self.assertEnqueued(tags=[])
        self.assertNotEnqueued(tags=["a", "z"])
        self.assertEnqueued(worker=w.RecordWorker, queue="reports", priority=3, tags=["b"],
                            args={"n": 1})
        self.assertNotEnqueued(worker=w.RecordWorker, queue="reports", priority=4)

    def test_args_match_as_a_recursive_subset(self):
        w.RecordWorker.enqueue({"user": {"id": 1, "name": "Ada", "roles": ["admin", "dev"]},
                                "count": 2})
        for pattern in ({}, {"count": 2}, {"user": {}}, {"user": {"id": 1}},
                        {"user": {"roles": ["admin", "dev"]}, "count": 2}):
            with self.subTest(pattern=pattern):
                self.assertEnqueued(args=pattern)
        # Lists are compared whole (in order); scalars by equality; every key must exist.
        for pattern in ({"user": {"roles": ["admin"]}}, {"user": {"roles": ["dev", "admin"]}},
                        {"user": {"id": 2}}, {"missing": 1}, {"user": {"id": 1, "age": 3}},
                        {"count": "2"}, {"user": 1}):
            with self.subTest(pattern=pattern):
                self.assertNotEnqueued(args=pattern)

    def test_args_are_compared_after_a_json_round_trip(self):
        at = datetime.datetime(2026, 1, 31, 12, 30, tzinfo=datetime.UTC)
        day = datetime.date(2026, 1, 31)
        ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
        price = decimal.Decimal("9.50")
        w.RecordWorker.enqueue({"ids": (1, 2), "at": at, "day": day, "ident": ident,
                                "price": price, "by_id": {7: "seven"}, "nested": [(1, (2,))]})
        # The Python values the job was enqueued with match...
        self.assertEnqueued(args={"ids": (1, 2), "at": at, "day": day, "ident": ident,
                                  "price": price, "by_id": {7: "seven"},
                                  "nested": [(1, (2,))]})
        # ...and so does what the database holds (strings, lists, string keys).
        self.assertEnqueued(args={"ids": [1, 2], "at": "2026-01-31T12:30:00Z",
                                  "day": "2026-01-31", "ident": str(ident), "price": "9.50",
                                  "by_id": {"7": "seven"}, "nested": [[1, [2]]]})
        self.assertNotEnqueued(args={"ids": (2, 1)})
        self.assertNotEnqueued(args={"by_id": {8: "seven"}})
        # A pattern JSON cannot hold is a mistake in the test, not a failed match.
        with self.assertRaises(InvalidJobError):
            self.assertEnqueued(args={"ids": {1, 2}})

    def test_meta_matches_like_args(self):
        w.RecordWorker.enqueue({}, meta={"trace": {"id": "abc", "spans": [1, 2]}, "by": 7})
        self.assertEnqueued(meta={"trace": {"id": "abc"}})
        self.assertEnqueued(meta={"by": 7, "trace": {"spans": (1, 2)}})
        self.assertNotEnqueued(meta={"trace": {"id": "xyz"}})
        self.assertNotEnqueued(meta={"user": 1})

    def test_any_means_the_key_is_present(self):
        w.RecordWorker.enqueue({"token": "s3cret", "user": {"id": 5, "tags": ["x", None]},
                                "nothing": None}, meta={"request_id": "r-1"})
        self.assertEqual(repr(ANY), "ANY")
        self.assertEnqueued(args={"token": ANY})
        self.assertEnqueued(args={"nothing": ANY})            # present, even if null
        self.assertEnqueued(args={"user": {"id": ANY, "tags": [ANY, ANY]}})
        self.assertEnqueued(args={"user": ANY})
        self.assertEnqueued(meta={"request_id": ANY})
        self.assertNotEnqueued(args={"password": ANY})
        self.assertNotEnqueued(args={"user": {"email": ANY}})
        self.assertNotEnqueued(args={"user": {"tags": [ANY]}})  # list lengths still count
        self.assertNotEnqueued(meta={"trace": ANY})

    def test_scheduled_at_within_one_second_by_default(self):
        at = timezone.now() + datetime.timedelta(hours=1)
        w.RecordWorker.enqueue({}, scheduled_at=at)
        second = datetime.timedelta(seconds=1)
        self.assertEnqueued(scheduled_at=at)
        self.assertEnqueued(scheduled_at=at + 0.9 * second)
        self.assertEnqueued(scheduled_at=at - 0.9 * second)
        self.assertNotEnqueued(scheduled_at=at + 1.5 * second)
        self.assertNotEnqueued(scheduled_at=at - 1.5 * second)
        # (datetime, delta) widens or narrows the window.
        self.assertEnqueued(scheduled_at=(at + 30 * second, datetime.timedelta(minutes=1)))
        self.assertNotEnqueued(scheduled_at=(at + 30 * second, 10 * second))
        self.assertNotEnqueued(scheduled_at=(at + 0.5 * second, datetime.timedelta(0)))
        self.assertEnqueued(scheduled_at=(at, datetime.timedelta(0)))

    def test_schedule_in_matches_now_plus_the_delay(self):
        w.RecordWorker.enqueue({"n": 1}, schedule_in=(5, "minutes"))
        w.RecordWorker.enqueue({"n": 2})
        in_five = timezone.now() + datetime.timedelta(minutes=5)
        self.assertEqual(self.assertEnqueued(scheduled_at=in_five).args, {"n": 1})
        self.assertEqual(self.assertEnqueued(scheduled_at=timezone.now()).args, {"n": 2})

    def test_newest_match_first(self):
        first = w.RecordWorker.enqueue({"kind": "a", "n": 1})
        second = w.RecordWorker.enqueue({"kind": "a", "n": 2})
        other = w.OtherWorker.enqueue({"kind": "a", "n": 3})
        self.assertEqual(self.assertEnqueued(args={"kind": "a"}).pk, other.pk)
        self.assertEqual(self.assertEnqueued(worker=w.RecordWorker).pk, second.pk)
        self.assertEqual([j.pk for j in self.all_enqueued()], [other.pk, second.pk, first.pk])
        self.assertEqual([j.pk for j in all_enqueued(worker=w.RecordWorker, args={"kind": "a"})],
                         [second.pk, first.pk])
        self.assertEqual(all_enqueued(worker=w.MailerWorker), [])

    def test_unknown_criterion_is_a_type_error(self):
        with self.assertRaises(TypeError):
            self.assertEnqueued(wroker=w.RecordWorker)
        with self.assertRaises(TypeError):
            all_enqueued(argz={})

    def test_every_job_field_is_a_criterion(self):
        job = w.RecordWorker.enqueue({"n": 1}, max_attempts=4, priority=3, tags=["a", "b"])
        w.RecordWorker.enqueue({"n": 2})
        criteria = {"max_attempts": 4, "attempt": 0, "priority": 3, "tags": ["b"],
                    "queue": "testing", "id": job.pk, "inserted_at": job.inserted_at,
                    "errors": [], "attempted_at": None, "completed_at": None,
                    "attempted_by": None, "unique_key": None, "chain": None,
                    "state": "available"}
        for name, value in criteria.items():
            with self.subTest(name):
                self.assertEqual(self.assertEnqueued(worker=w.RecordWorker, args={"n": 1},
                                                     **{name: value}).pk, job.pk)
        self.assertEqual(self.assertEnqueued(**criteria).pk, job.pk)
        self.assertEqual([j.pk for j in all_enqueued(max_attempts=4)], [job.pk])
        self.assertNotEnqueued(max_attempts=5)
        self.assertNotEnqueued(attempt=1)
        self.assertNotEnqueued(args={"n": 1}, errors=[{"attempt": 1, "error": ANY}])
        self.assertNotEnqueued(args={"n": 1}, attempted_at=timezone.now())
        # None is ignored for a field that is never NULL (as it always was).
        self.assertEqual(len(self.all_enqueued(queue=None, priority=None)), 2)

    def test_errors_attempt_and_state_of_a_failed_job(self):
        now = timezone.now()
        job = w.RecordWorker.enqueue({"n": 1})
        error = {"at": now.isoformat(), "attempt": 1, "error": "ValueError: boom"}
        set_state(job, "retryable", attempt=1, attempted_at=now, errors=[error],
                  attempted_by=["node-1", "p"])
        self.assertNotEnqueued(args={"n": 1})                # retryable is not enqueued
        found = self.assertEnqueued(state="retryable", attempt=1,
                                    errors=[{"attempt": 1, "error": ANY}],
                                    attempted_at=now, attempted_by=["node-1", ANY])
        self.assertEqual(found.pk, job.pk)
        self.assertNotEnqueued(state="retryable", errors=[])
        self.assertNotEnqueued(state="retryable", errors=[{"attempt": 2}])
        self.assertNotEnqueued(state=["retryable", "completed"], attempted_at=None)

    def test_every_datetime_field_has_the_scheduled_at_tolerance(self):
        job = w.RecordWorker.enqueue({"n": 1})
        at = job.inserted_at
        second = datetime.timedelta(seconds=1)
        set_state(job, "completed", attempt=1, attempted_at=at, completed_at=at)
        for name in ("inserted_at", "attempted_at", "completed_at"):
            with self.subTest(name):
                self.assertEnqueued(state="completed", **{name: at + 0.9 * second})
                self.assertNotEnqueued(state="completed", **{name: at + 1.5 * second})
                self.assertEnqueued(state="completed",
                                    **{name: (at + 30 * second, 60 * second)})
                self.assertNotEnqueued(state="completed",
                                       **{name: (at + 0.5 * second, 0 * second)})

    def test_bad_criteria_are_clear_type_errors(self):
        with self.assertRaisesMessage(TypeError, "unknown job field 'max_attempt' to match, "
                                                 "did you mean 'max_attempts'?"):
            self.assertEnqueued(max_attempt=3)
        with self.assertRaisesMessage(TypeError, "inserted_at to match must be "
                                                 "timezone-aware"):
            self.all_enqueued(inserted_at=datetime.datetime(2026, 1, 1))
        with self.assertRaisesMessage(TypeError, "completed_at to match must be a datetime "
                                                 "or (datetime, timedelta), not 'today'"):
            self.assertNotEnqueued(completed_at="today")

    def test_failure_shows_the_fields_looked_for(self):
        w.RecordWorker.enqueue({"n": 1}, max_attempts=4)
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued(worker=w.RecordWorker, max_attempts=3, attempt=0)
        lines = str(caught.exception).splitlines()
        self.assertEqual(lines[0], "Expected a job matching worker=<class "
                                   "'tests.testing_workers.RecordWorker'>, attempt=0, "
                                   "max_attempts=3, found none.")
        self.assertRegex(lines[2], r"^  #\d+ tests\.testing_workers\.RecordWorker "
                                   r"queue=testing state=available priority=0 "
                                   r"args=\{'n': 1\} attempt=0 max_attempts=4$")
        with self.assertRaises(self.failureException) as caught:
            self.assertNotEnqueued(max_attempts=4)
        self.assertTrue(str(caught.exception).splitlines()[1].endswith(" max_attempts=4"))

    def test_failure_in_other_states_lists_those_states(self):
        job = w.RecordWorker.enqueue({"n": 1})
        set_state(job, "completed", attempt=1, completed_at=timezone.now())
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued(state="completed", args={"n": 2})
        lines = str(caught.exception).splitlines()
        self.assertEqual(lines[0], "Expected a job matching args={'n': 2}, "
                                   "state='completed', found none.")
        self.assertEqual(lines[1], "Jobs completed (newest first):")
        self.assertIn("state=completed", lines[2])
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued(state=["discarded", "cancelled"])
        self.assertEqual(str(caught.exception).splitlines()[1],
                         "No jobs are cancelled or discarded.")

    def test_module_functions_raise_assertion_error(self):
        w.RecordWorker.enqueue({"n": 1})
        self.assertEqual(assert_enqueued(args={"n": 1}).args, {"n": 1})
        with self.assertRaises(AssertionError):
            assert_enqueued(args={"n": 2})
        assert_not_enqueued(args={"n": 2})
        with self.assertRaises(AssertionError):
            assert_not_enqueued(args={"n": 1})

    def test_a_rolled_back_insert_is_not_enqueued(self):
        class Rollback(Exception):
            pass

        with self.assertRaises(Rollback), transaction.atomic():
            w.RecordWorker.enqueue({"n": 1})
            self.assertEnqueued(args={"n": 1})      # visible inside the transaction
            raise Rollback
        self.assertNotEnqueued(args={"n": 1})

    @override_settings(ROOT_URLCONF="tests.testing_workers")
    def test_what_a_view_enqueued(self):
        response = self.client.post("/signup/", {"email": "ada@example.com"})
        self.assertEqual(response.status_code, 201)
        job = self.assertEnqueued(worker=w.MailerWorker, queue="mailers", priority=2,
                                  tags=["mail"], args={"email": "ada@example.com"},
                                  meta={"ip": ANY}, scheduled_at=timezone.now())
        self.assertEqual(job.args, {"email": "ada@example.com", "source": "signup"})
        self.assertNotEnqueued(worker=w.MailerWorker, args={"email": "grace@example.com"})
        self.assertEqual(w.performed.items, [])

    # -- failure messages ----------------------------------------------------------------

    def test_failure_lists_the_criteria_and_what_was_enqueued(self):
        w.RecordWorker.enqueue({"n": 1})
        w.OtherWorker.enqueue({"n": 2}, queue="reports", priority=4, schedule_in=600,
                              meta={"by": "cron"})
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued(worker=w.RecordWorker, args={"n": 3}, queue="testing")
        message = str(caught.exception)
        lines = message.splitlines()
        self.assertEqual(lines[0], "Expected a job matching worker=<class "
                                   "'tests.testing_workers.RecordWorker'>, queue='testing', "
                                   "args={'n': 3}, found none.")
        self.assertEqual(lines[1], "Enqueued jobs (newest first):")
        # Newest first: worker, queue, state, priority, args (and meta when there is some).
        self.assertRegex(lines[2], r"^  #\d+ tests\.testing_workers\.OtherWorker "
                                   r"queue=reports state=scheduled priority=4 "
                                   r"args=\{'n': 2\} meta=\{'by': 'cron'\}$")
        self.assertRegex(lines[3], r"^  #\d+ tests\.testing_workers\.RecordWorker "
                                   r"queue=testing state=available priority=0 "
                                   r"args=\{'n': 1\}$")
        self.assertEqual(len(lines), 4)

    def test_failure_with_nothing_enqueued(self):
        finished = w.RecordWorker.enqueue({"n": 1})
        set_state(finished, "completed", attempt=1, completed_at=timezone.now())
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued()
        self.assertEqual(str(caught.exception),
                         "Expected a job matching any job, found none.\nNo jobs are enqueued.")

    def test_failure_message_is_trimmed(self):
        django_jobs.insert_all([w.RecordWorker.new({"n": n}) for n in range(30)])
        w.RecordWorker.enqueue({"blob": "x" * 5000})
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued(worker=w.OtherWorker)
        lines = str(caught.exception).splitlines()
        self.assertEqual(lines[1], "Enqueued jobs (newest first, first 20):")
        self.assertEqual(len(lines), 22)                # 31 jobs enqueued, 20 listed
        self.assertIn("args={'blob': 'xxx", lines[2])
        self.assertTrue(lines[2].endswith("..."))
        self.assertLess(len(lines[2]), 250)
        self.assertIn("args={'n': 29}", lines[3])       # newest first
        self.assertIn("args={'n': 11}", lines[21])
        self.assertNotIn("args={'n': 10}", str(caught.exception))
        self.assertLess(len(str(caught.exception)), 20 * 250)

    def test_not_enqueued_failure_lists_the_matches(self):
        w.RecordWorker.enqueue({"n": 1, "email": "ada@example.com"})
        w.RecordWorker.enqueue({"n": 2}, schedule_in=60)
        w.OtherWorker.enqueue({"n": 3})
        with self.assertRaises(self.failureException) as caught:
            self.assertNotEnqueued(worker=RECORD)
        lines = str(caught.exception).splitlines()
        self.assertEqual(lines[0], "Expected no job matching "
                                   "worker='tests.testing_workers.RecordWorker', found 2:")
        self.assertRegex(lines[1], r"^  #\d+ tests\.testing_workers\.RecordWorker "
                                   r"queue=testing state=scheduled priority=0 "
                                   r"args=\{'n': 2\}$")
        self.assertRegex(lines[2], r"^  #\d+ tests\.testing_workers\.RecordWorker "
                                   r"queue=testing state=available priority=0 "
                                   r"args=\{'n': 1, 'email': 'ada@example.com'\}$")
        self.assertEqual(len(lines), 3)

    def test_not_enqueued_failure_lists_at_most_twenty(self):
        django_jobs.insert_all([w.RecordWorker.new({"n": n}) for n in range(25)])
        with self.assertRaises(self.failureException) as caught:
            self.assertNotEnqueued(worker=w.RecordWorker)
        lines = str(caught.exception).splitlines()
        self.assertIn("found 25:", lines[0])
        self.assertEqual(len(lines), 21)

    def test_not_enqueued_failure_trims_long_args(self):
        w.RecordWorker.enqueue({"blob": "x" * 5000})
        with self.assertRaises(self.failureException) as caught:
            self.assertNotEnqueued(worker=w.RecordWorker)
        self.assertLess(len(str(caught.exception)), 500)

    def test_bool_and_none_keys_are_compared_after_a_json_round_trip(self):
        w.RecordWorker.enqueue({"flags": {True: 1, None: 2}})
        self.assertEqual(Job.objects.get().args, {"flags": {"true": 1, "null": 2}})
        self.assertEnqueued(args={"flags": {True: 1, None: 2}})


class EnqueuedAssertionsTestCase(EnqueuedAssertions, JobsTestCase):
    """Inside a transaction rolled back after each test."""


class EnqueuedAssertionsTransactionTestCase(EnqueuedAssertions, JobsTestMixin,
                                            TransactionTestCase):
    """With real commits (tables flushed after each test)."""


class MixinTests(TestCase):
    def test_jobs_test_case_is_a_django_test_case_with_the_helpers(self):
        self.assertTrue(issubclass(JobsTestCase, TestCase))
        self.assertTrue(issubclass(JobsTestCase, JobsTestMixin))
        for name in ("assertEnqueued", "assertNotEnqueued", "all_enqueued", "perform_job",
                     "drain_queue"):
            self.assertTrue(callable(getattr(JobsTestMixin, name)), name)

    def test_the_mixin_raises_the_test_cases_failure_exception(self):
        class Failure(AssertionError):
            pass

        class Case(JobsTestMixin, unittest.TestCase):
            failureException = Failure

            def runTest(self):
                pass

        with self.assertRaises(Failure):
            Case().assertEnqueued(worker=w.RecordWorker)
        w.RecordWorker.enqueue({})
        with self.assertRaises(Failure):
            Case().assertNotEnqueued(worker=w.RecordWorker)


# -- waiting: another thread inserts while the assertion polls (needs real commits) ---------

class TimeoutTests(JobsTestMixin, TransactionTestCase):
    """The ``timeout`` of the assertions. Stopwatch bounds here are one-sided where load could
    stretch them: an assertion that waits is at least as long as its wait, and one that finds
    its job returns long (half the timeout) before the timeout it was given."""

    #: The timeout given to assertions expected to return before it.
    LONG = 30

    def enqueue_later(self, after, *args, **options) -> threading.Thread:
        """Enqueue a RecordWorker job from another thread once ``after`` (a number of seconds,
        or an Event) has passed; the thread is joined, bounded, at the end of the test."""

        def run():
            if isinstance(after, threading.Event):
                after.wait(self.LONG)
            else:
                time.sleep(after)
            w.RecordWorker.enqueue(*args, **options)

        thread = in_thread(run, name="enqueue later")
        self.addCleanup(join_all, [thread], what="the enqueuing thread")
        return thread

    def test_assert_enqueued_waits_for_a_job_inserted_later(self):
        self.enqueue_later(0.3, {"n": "late"})
        self.assertNotEnqueued(args={"n": "late"})        # not there yet
        started = time.monotonic()
        job = self.assertEnqueued(worker=w.RecordWorker, args={"n": "late"}, timeout=self.LONG)
        elapsed = time.monotonic() - started
        self.assertEqual(job.args, {"n": "late"})
        self.assertGreater(elapsed, 0.15)
        self.assertLess(elapsed, self.LONG / 2)           # found soon after the insert

    def test_assert_enqueued_gives_up_after_the_timeout(self):
        w.RecordWorker.enqueue({"n": 1})
        started = time.monotonic()
        with self.assertRaises(self.failureException) as caught:
            self.assertEnqueued(args={"n": 2}, timeout=0.3)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.3)
        self.assertLess(elapsed, 0.3 + 10)                # gave up, not waited on
        message = str(caught.exception)
        self.assertTrue(message.startswith("Expected a job matching args={'n': 2} within "
                                           "0.3 s, found none."), message)
        self.assertIn("args={'n': 1}", message)

    def test_assert_enqueued_with_timeout_returns_at_once_when_present(self):
        w.RecordWorker.enqueue({"n": 1})
        started = time.monotonic()
        self.assertEnqueued(args={"n": 1}, timeout=self.LONG)
        self.assertLess(time.monotonic() - started, self.LONG / 2)

    def test_assert_not_enqueued_with_timeout_catches_a_late_insert(self):
        self.enqueue_later(0.3, {"n": "late"})
        started = time.monotonic()
        with self.assertRaises(self.failureException) as caught:
            self.assertNotEnqueued(worker=w.RecordWorker, timeout=self.LONG)
        elapsed = time.monotonic() - started
        self.assertGreater(elapsed, 0.15)
        self.assertLess(elapsed, self.LONG / 2)           # failed as soon as it appeared
        self.assertIn("args={'n': 'late'}", str(caught.exception))

    def test_assert_not_enqueued_with_timeout_keeps_checking_for_that_long(self):
        w.OtherWorker.enqueue({"n": 1})
        started = time.monotonic()
        self.assertNotEnqueued(worker=w.RecordWorker, timeout=0.3)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    def test_assert_not_enqueued_misses_an_insert_after_its_timeout(self):
        timed_out = threading.Event()
        thread = self.enqueue_later(timed_out, {"n": "later"})
        self.assertNotEnqueued(worker=w.RecordWorker, timeout=0.1)
        timed_out.set()
        join_all([thread], what="the enqueuing thread")
        self.assertEnqueued(worker=w.RecordWorker, args={"n": "later"})
