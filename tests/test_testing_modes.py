"""Testing helpers, part 4: testing modes (``DJANGO_JOBS["TESTING"]`` and
``with_testing_mode``): inline runs jobs at insert time, manual inserts and runs nothing."""

import asyncio
import io
import logging
import threading

from django.core.management import CommandError, call_command
from django.test import TransactionTestCase, override_settings

import django_jobs
from django_jobs import InvalidJobError, UnknownOptionError
from django_jobs.models import Job, Producer
from django_jobs.runtime import node as runtime_node
from django_jobs.testing import JobsTestCase, JobsTestMixin, testing_mode, with_testing_mode

from . import testing_workers as w

INLINE = {"QUEUES": {"testing": 2}, "TESTING": "inline"}
MANUAL = {"QUEUES": {"testing": 2}, "TESTING": "manual"}


def quiet_executor(test):
    logger = logging.getLogger("django_jobs.executor")
    level = logger.level
    logger.setLevel(logging.ERROR)
    test.addCleanup(logger.setLevel, level)


class InlineModeTests(JobsTestCase):
    def setUp(self):
        w.performed.clear()
        quiet_executor(self)

    @override_settings(DJANGO_JOBS=INLINE)
    def test_the_setting_runs_jobs_at_insert_time_in_this_thread(self):
        self.assertEqual(testing_mode(), "inline")
        job = w.RecordWorker.enqueue({"value": 3})
        self.assertEqual(w.performed.args(), [{"value": 3}])
        self.assertEqual(w.performed.threads, [threading.get_ident()])
        self.assertEqual((job.state, job.attempt, job.errors, job.pk), ("completed", 1, [], None))
        self.assertEqual(job.result, 3)
        self.assertIsNotNone(job.completed_at)
        # Nothing is written, and no node or producer is involved.
        self.assertEqual(Job.objects.count(), 0)
        self.assertEqual(Producer.objects.count(), 0)
        self.assertEqual(runtime_node.local_nodes, [])
        self.assertNotEnqueued()

    @override_settings(DJANGO_JOBS=INLINE)
    def test_every_outcome(self):
        failed = w.FailWorker.enqueue({"n": 1})
        self.assertEqual((failed.state, failed.attempt), ("retryable", 1))
        self.assertIn("ValueError: boom 1", failed.errors[0]["error"])
        last = w.FailWorker.enqueue({"n": 2}, max_attempts=1)
        self.assertEqual(last.state, "discarded")
        self.assertEqual(w.SnoozeWorker.enqueue({}).state, "scheduled")
        self.assertEqual(w.CancelWorker.enqueue({}).state, "cancelled")
        discarded = w.DiscardWorker.enqueue({})
        self.assertEqual(discarded.state, "discarded")
        self.assertEqual(discarded.errors[0]["error"], "Discarded: bad input")
        done = w.AsyncRecordWorker.enqueue({"value": 1})
        self.assertEqual((done.state, done.result), ("completed", {"async": 1}))
        self.assertEqual(w.AsyncFailWorker.enqueue({}).state, "retryable")
        self.assertEqual(Job.objects.count(), 0)

    @override_settings(DJANGO_JOBS=INLINE)
    def test_insert_all_and_scheduled_jobs(self):
        jobs = django_jobs.insert_all([w.RecordWorker.new({"n": n}) for n in range(3)]
                                      + [w.RecordWorker.new({"n": 3}, schedule_in=3600)])
        self.assertEqual([job.state for job in jobs], ["completed"] * 4)
        # Scheduled jobs run at once too: inline does not wait.
        self.assertEqual([args["n"] for args in w.performed.args()], [0, 1, 2, 3])

    @override_settings(DJANGO_JOBS=INLINE)
    def test_jobs_inserted_by_an_inline_job_run_inline(self):
        w.ChainWorker.enqueue({"depth": 3})
        self.assertEqual(w.performed.args(),
                         [{"depth": 3}, {"depth": 2}, {"depth": 1}, {"depth": 0}])
        self.assertEqual(Job.objects.count(), 0)

    @override_settings(DJANGO_JOBS=INLINE)
    def test_unique_is_not_checked(self):
        # Nothing is written, so there is no duplicate to find: each insert runs (as Oban).
        first = w.UniqueWorker.enqueue({"n": 1})
        again = w.UniqueWorker.enqueue({"n": 1})
        self.assertEqual([first.state, again.state], ["completed", "completed"])
        self.assertFalse(again.conflict)
        self.assertEqual(w.performed.args(), [{"n": 1}, {"n": 1}])

    @override_settings(DJANGO_JOBS=INLINE)
    def test_jobs_are_still_validated(self):
        with self.assertRaises(InvalidJobError):
            w.RecordWorker.enqueue({"x": object()})
        with self.assertRaises(UnknownOptionError):
            w.RecordWorker.enqueue({}, priorty=1)
        with self.assertRaises(InvalidJobError):
            django_jobs.insert("not a job")
        self.assertEqual(w.performed.items, [])

    def test_with_testing_mode_as_a_context_manager(self):
        self.assertIsNone(testing_mode())
        with with_testing_mode("inline") as mode:
            self.assertIsInstance(mode, with_testing_mode)
            self.assertEqual(testing_mode(), "inline")
            self.assertEqual(w.RecordWorker.enqueue({"n": 1}).state, "completed")
        self.assertIsNone(testing_mode())
        job = w.RecordWorker.enqueue({"n": 2})
        self.assertEqual(job.state, "available")
        self.assertEqual(w.performed.args(), [{"n": 1}])
        self.assertEnqueued(args={"n": 2})

    @with_testing_mode("inline")
    def test_with_testing_mode_as_a_decorator(self):
        self.assertEqual(testing_mode(), "inline")
        self.assertEqual(w.MailerWorker.enqueue({"email": "ada@example.com"}).result,
                         {"sent_to": "ada@example.com"})
        self.assertEqual(Job.objects.count(), 0)

    def test_the_decorator_restores_the_mode_and_can_be_reused(self):
        inline = with_testing_mode("inline")

        @inline
        def run(n):
            self.assertEqual(testing_mode(), "inline")
            return w.RecordWorker.enqueue({"n": n}).state

        self.assertEqual([run(1), run(2)], ["completed", "completed"])
        with inline:
            with inline:
                self.assertEqual(testing_mode(), "inline")
            self.assertEqual(testing_mode(), "inline")
        self.assertIsNone(testing_mode())

    def test_nesting(self):
        with with_testing_mode("manual"):
            self.assertEqual(testing_mode(), "manual")
            with with_testing_mode("inline"):
                self.assertEqual(testing_mode(), "inline")
                self.assertEqual(w.RecordWorker.enqueue({"n": 1}).state, "completed")
                with with_testing_mode(None):
                    self.assertIsNone(testing_mode())
                    self.assertIsNotNone(w.RecordWorker.enqueue({"n": 2}).pk)
                self.assertEqual(testing_mode(), "inline")
            self.assertEqual(testing_mode(), "manual")
        self.assertIsNone(testing_mode())
        self.assertEqual(w.performed.args(), [{"n": 1}])
        self.assertEnqueued(args={"n": 2})

    def test_decorating_a_coroutine_function(self):
        @with_testing_mode("inline")
        async def mode_inside():
            await asyncio.sleep(0)
            return testing_mode()

        self.assertEqual(asyncio.run(mode_inside()), "inline")

    def test_the_mode_is_restored_after_an_exception(self):
        with self.assertRaises(ZeroDivisionError), with_testing_mode("inline"):
            1 / 0  # noqa: B018
        self.assertIsNone(testing_mode())

    @override_settings(DJANGO_JOBS=INLINE)
    def test_none_overrides_the_setting(self):
        with with_testing_mode(None):
            self.assertIsNone(testing_mode())
            job = w.RecordWorker.enqueue({"n": 1})
        self.assertEqual(job.state, "available")
        self.assertEqual(w.performed.items, [])
        self.assertEqual(testing_mode(), "inline")
        with with_testing_mode("manual"):
            self.assertEqual(testing_mode(), "manual")

    def test_the_setting_follows_override_settings(self):
        self.assertIsNone(testing_mode())
        with override_settings(DJANGO_JOBS=MANUAL):
            self.assertEqual(testing_mode(), "manual")
            with override_settings(DJANGO_JOBS=INLINE):
                self.assertEqual(testing_mode(), "inline")
            self.assertEqual(testing_mode(), "manual")
        self.assertIsNone(testing_mode())

    def test_bad_modes_are_refused(self):
        for mode in ("INLINE", "auto", "production", True, ""):
            with self.subTest(mode=mode), self.assertRaises(ValueError):
                with_testing_mode(mode)

    def test_the_mode_belongs_to_the_thread_that_set_it(self):
        seen = []
        with with_testing_mode("inline"):
            thread = threading.Thread(target=lambda: seen.append(testing_mode()))
            thread.start()
            thread.join()
        self.assertEqual(seen, [None])

    def test_the_helpers_work_in_inline_mode(self):
        with with_testing_mode("inline"):
            self.assertEqual(self.perform_job(w.RecordWorker, {"value": 1}), 1)
            self.assertEqual(self.drain_queue("testing"),
                             {"completed": 0, "failed": 0, "discarded": 0, "cancelled": 0,
                              "snoozed": 0})


class ManualModeTests(JobsTestCase):
    def setUp(self):
        w.performed.clear()

    def runjobs(self):
        call_command("runjobs", stdout=io.StringIO(), stderr=io.StringIO())

    @override_settings(DJANGO_JOBS=MANUAL)
    def test_jobs_are_inserted_and_nothing_runs(self):
        job = w.RecordWorker.enqueue({"n": 1})
        self.assertEqual((job.state, job.attempt), ("available", 0))
        self.assertIsNotNone(job.pk)
        self.assertEnqueued(worker=w.RecordWorker, args={"n": 1})
        self.assertEqual(w.performed.items, [])

    @override_settings(DJANGO_JOBS=MANUAL)
    def test_runjobs_refuses_to_start(self):
        with self.assertRaisesMessage(CommandError, "testing mode 'manual' is on"):
            self.runjobs()
        self.assertEqual(runtime_node.local_nodes, [])
        self.assertEqual(Producer.objects.count(), 0)

    def test_runjobs_refuses_under_with_testing_mode(self):
        with override_settings(DJANGO_JOBS={"QUEUES": {"testing": 1}}):
            for mode in ("manual", "inline"):
                with self.subTest(mode=mode), with_testing_mode(mode), \
                        self.assertRaisesMessage(CommandError, f"testing mode {mode!r} is on"):
                    self.runjobs()
        self.assertEqual(runtime_node.local_nodes, [])

    @override_settings(DJANGO_JOBS=MANUAL)
    def test_drain_queue_runs_them_when_asked(self):
        w.RecordWorker.enqueue({"n": 1})
        self.assertEqual(self.drain_queue("testing")["completed"], 1)
        self.assertEqual(w.performed.args(), [{"n": 1}])

    @with_testing_mode("manual")
    def test_as_a_decorator(self):
        self.assertEqual(testing_mode(), "manual")
        self.assertIsNotNone(w.RecordWorker.enqueue({}).pk)


class ModesTransactionTests(JobsTestMixin, TransactionTestCase):
    """The modes with real commits."""

    def setUp(self):
        w.performed.clear()
        quiet_executor(self)

    def test_inline_writes_nothing(self):
        with with_testing_mode("inline"):
            self.assertEqual(w.RecordWorker.enqueue({"n": 1}).state, "completed")
            self.assertEqual(w.FailWorker.enqueue({"n": 2}).state, "retryable")
        self.assertEqual(Job.objects.count(), 0)

    def test_manual_commits_the_jobs(self):
        with with_testing_mode("manual"):
            w.RecordWorker.enqueue({"n": 1})
        self.assertEnqueued(args={"n": 1})
        self.assertEqual(self.drain_queue("testing")["completed"], 1)
