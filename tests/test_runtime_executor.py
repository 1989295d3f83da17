"""Outcomes of jobs run by a real in-process node: what perform returns or raises, and what
the database ends up holding."""

import datetime
import threading
import time

from django.db import transaction
from django.utils import timezone

import django_jobs
from django_jobs.models import Job
from django_jobs.runtime import node as runtime_node

from . import runtime_workers as w
from .helpers import describe_jobs, insert_jobs, reload, wait_for_state
from .runtime_workers import RuntimeTestCase, record, wait_until

OUTCOMES = {"outcomes": 5}


def error_time(entry) -> datetime.datetime:
    return datetime.datetime.fromisoformat(entry["at"])


class OutcomeTests(RuntimeTestCase):
    def test_none_and_values_complete(self):
        self.start_node(OUTCOMES)
        none = w.ReturnWorker.enqueue({})
        value = w.ReturnWorker.enqueue({"value": {"a": [1, 2]}})
        before = timezone.now()
        for job in (none, value):
            done = wait_for_state(job, "completed")
            self.assertIsNotNone(done.completed_at)
            self.assertLessEqual(done.attempted_at, done.completed_at)
            self.assertEqual(done.attempt, 1)
            self.assertEqual(done.errors, [])
            self.assertIsNone(done.discarded_at)
            self.assertIsNone(done.cancelled_at)
            self.assertEqual(done.attempted_by[0], "node-test_none_and_values_complete")
            # This run's time, not a default or a time zone off (generous for a slow run).
            self.assertLess(abs((done.completed_at - before).total_seconds()), 60)
        self.assertNothingExecuting()

    def test_exception_makes_job_retryable_with_error_and_default_backoff(self):
        self.start_node(OUTCOMES)
        job = w.FailWorker.enqueue({"tag": "first"}, max_attempts=3)
        failed = wait_for_state(job, "retryable")
        self.assertEqual(failed.attempt, 1)
        self.assertEqual(len(failed.errors), 1)
        entry = failed.errors[0]
        self.assertEqual(set(entry), {"at", "attempt", "error"})
        self.assertEqual(entry["attempt"], 1)
        self.assertIn("Traceback (most recent call last)", entry["error"])
        self.assertIn("ValueError: boom first", entry["error"])
        self.assertIn("runtime_workers.py", entry["error"])
        # Oban's default backoff for attempt 1: 15 + 2**1 seconds plus up to 10 % jitter.
        delay = (failed.scheduled_at - error_time(entry)).total_seconds()
        self.assertGreaterEqual(delay, 17 - 0.01)
        self.assertLessEqual(delay, 17 * 1.1 + 0.01)
        self.assertIsNone(failed.completed_at)
        self.assertIsNone(failed.discarded_at)

    def test_last_attempt_failure_discards(self):
        self.start_node(OUTCOMES)
        job = w.FailWorker.enqueue({"tag": "only"}, max_attempts=1)
        done = wait_for_state(job, "discarded")
        self.assertIsNotNone(done.discarded_at)
        self.assertEqual(done.attempt, 1)
        self.assertEqual(len(done.errors), 1)
        self.assertIn("ValueError: boom only", done.errors[0]["error"])

    def test_retries_until_max_attempts_then_discards(self):
        # backoff() == 0 and a leader node: the stager brings the job back for attempt 2.
        self.start_node(OUTCOMES, plugins=True)
        job = w.FastRetryWorker.enqueue({})
        done = wait_for_state(job, "discarded")
        self.assertEqual(done.attempt, 2)
        self.assertEqual(done.max_attempts, 2)
        self.assertEqual([e["attempt"] for e in done.errors], [1, 2])
        self.assertIn("RuntimeError: attempt 1 failed", done.errors[0]["error"])
        self.assertIn("RuntimeError: attempt 2 failed", done.errors[1]["error"])

    def test_snooze_reschedules_without_using_an_attempt(self):
        self.start_node(OUTCOMES)
        job = w.SnoozeWorker.enqueue({"seconds": 120}, max_attempts=4, meta={"keep": 1})
        snoozed = wait_for_state(job, "scheduled")
        self.assertEqual(snoozed.attempt, 1)
        self.assertEqual(snoozed.max_attempts, 5)
        self.assertEqual(snoozed.meta, {"keep": 1, "snoozed": 1})
        self.assertEqual(snoozed.errors, [])
        # 120 s from when the job ran (plus how long perform and writing the outcome took).
        delay = (snoozed.scheduled_at - snoozed.attempted_at).total_seconds()
        self.assertGreaterEqual(delay, 120)
        self.assertLess(delay, 120 + 30)

    def test_second_snooze_counts_up(self):
        self.start_node(OUTCOMES)
        job = w.SnoozeWorker.enqueue({"seconds": 60}, max_attempts=1)
        wait_for_state(job, "scheduled")
        self.assertTrue(django_jobs.retry_job(job))
        again = wait_until(lambda: (j := reload(job)).state == "scheduled" and j.attempt == 2
                           and j, what="the second snooze")
        self.assertEqual(again.meta["snoozed"], 2)
        self.assertEqual(again.max_attempts, 3)

    def test_cancel_result(self):
        self.start_node(OUTCOMES)
        job = w.CancelWorker.enqueue({"reason": "customer left"})
        done = wait_for_state(job, "cancelled")
        self.assertIsNotNone(done.cancelled_at)
        self.assertIsNone(done.completed_at)
        self.assertEqual(len(done.errors), 1)
        self.assertIn("customer left", done.errors[0]["error"])
        self.assertEqual(done.errors[0]["attempt"], 1)

    def test_discard_result(self):
        self.start_node(OUTCOMES)
        job = w.DiscardWorker.enqueue({"reason": "bad input"}, max_attempts=10)
        done = wait_for_state(job, "discarded")
        self.assertIsNotNone(done.discarded_at)
        self.assertEqual(done.attempt, 1)  # discarded at once, attempts left or not
        self.assertEqual(len(done.errors), 1)
        self.assertIn("bad input", done.errors[0]["error"])

    def test_custom_backoff(self):
        self.start_node(OUTCOMES)
        job = w.CustomBackoffWorker.enqueue({})
        failed = wait_for_state(job, "retryable")
        delay = (failed.scheduled_at - error_time(failed.errors[-1])).total_seconds()
        self.assertAlmostEqual(delay, w.CustomBackoffWorker.BACKOFF + 1, delta=0.01)
        self.assertIn("KeyError: 'missing'", failed.errors[-1]["error"])

    def test_failing_backoff_falls_back_to_default(self):
        self.start_node(OUTCOMES)
        job = w.BrokenBackoffWorker.enqueue({})
        failed = wait_for_state(job, "retryable")
        delay = (failed.scheduled_at - error_time(failed.errors[-1])).total_seconds()
        self.assertGreaterEqual(delay, 17 - 0.01)
        self.assertLessEqual(delay, 17 * 1.1 + 0.01)

    def test_timeout_stops_a_busy_python_loop(self):
        # Stopped by the 0.3 s timeout: without it the loop would return after BLOCK_LIMIT s
        # and the job would complete.
        node = self.start_node(OUTCOMES)
        job = w.BusyLoopTimeoutWorker.enqueue({})
        failed = wait_for_state(job, "retryable", "completed", timeout=w.BLOCK_LIMIT + 10)
        self.assertEqual(failed.state, "retryable", failed.errors)
        self.assertEqual(record.exited.get(job.pk), "JobTimeout")
        self.assertEqual(len(failed.errors), 1)
        self.assertIn("timeout", failed.errors[0]["error"].lower())
        self.assertIn("0.3", failed.errors[0]["error"])
        self.assertGreater(failed.scheduled_at, failed.attempted_at)
        # The pool thread is free again: the node still runs jobs.
        wait_for_state(w.ReturnWorker.enqueue({}), "completed")
        self.assertEqual(node.running_count(), 0)

    def test_timeout_on_last_attempt_discards(self):
        self.start_node(OUTCOMES)
        job = w.BusyLoopTimeoutWorker.enqueue({}, max_attempts=1)
        done = wait_for_state(job, "discarded")
        self.assertIn("timeout", done.errors[0]["error"].lower())

    def test_timeout_stops_an_async_job(self):
        self.start_node(OUTCOMES)
        job = w.AsyncSleepTimeoutWorker.enqueue({})
        failed = wait_for_state(job, "retryable", "completed", timeout=w.BLOCK_LIMIT + 10)
        self.assertEqual(failed.state, "retryable", failed.errors)
        self.assertIn(record.exited.get(job.pk), ("CancelledError", "TimeoutError"))
        self.assertEqual(len(failed.errors), 1)
        self.assertIn("timeout", failed.errors[0]["error"].lower())

    def test_no_timeout_lets_job_finish(self):
        self.start_node(OUTCOMES)
        job = w.NoneTimeoutWorker.enqueue({})
        self.assertEqual(wait_for_state(job, "completed").errors, [])

    def test_async_perform_returning_a_value_completes(self):
        self.start_node(OUTCOMES)
        jobs = [w.AsyncReturnWorker.enqueue({"x": i}) for i in range(5)]
        for job in jobs:
            done = wait_for_state(job, "completed")
            self.assertEqual(done.errors, [])
            self.assertIsNotNone(done.completed_at)

    def test_async_perform_raising_is_retryable(self):
        self.start_node(OUTCOMES)
        job = w.AsyncFailWorker.enqueue({})
        failed = wait_for_state(job, "retryable")
        self.assertIn("LookupError: async failure", failed.errors[0]["error"])

    def test_unknown_worker_path_is_retryable_and_node_keeps_running(self):
        bad = w.ReturnWorker.enqueue({"which": "bad"})
        Job.objects.filter(pk=bad.pk).update(worker="tests.runtime_workers.NoSuchWorker")
        good = w.ReturnWorker.enqueue({"which": "good"})
        node = self.start_node(OUTCOMES)
        failed = wait_for_state(bad, "retryable")
        self.assertEqual(failed.attempt, 1)
        self.assertEqual(len(failed.errors), 1)
        self.assertIn("tests.runtime_workers.NoSuchWorker", failed.errors[0]["error"])
        self.assertIn("cannot be imported", failed.errors[0]["error"])
        self.assertGreater(failed.scheduled_at, timezone.now())
        wait_for_state(good, "completed")
        later = w.ReturnWorker.enqueue({"which": "later"})
        wait_for_state(later, "completed")
        self.assertEqual(node.running_count(), 0)

    def test_path_that_is_not_a_worker_is_retryable(self):
        bad = w.ReturnWorker.enqueue({})
        Job.objects.filter(pk=bad.pk).update(worker="tests.runtime_workers.Record")
        self.start_node(OUTCOMES)
        failed = wait_for_state(bad, "retryable")
        self.assertIn("not a django_jobs.Worker subclass", failed.errors[0]["error"])

    def test_job_leaving_a_transaction_open_does_not_break_the_next_ones(self):
        node = self.start_node({"orm": 1})
        first = w.LeaveTransactionOpenWorker.enqueue({})
        wait_for_state(first, "completed")
        # The same (only) pool thread runs the next jobs, in autocommit again.
        for _ in range(3):
            done = wait_for_state(w.OrmWorker.enqueue({}), "completed", "retryable")
            self.assertEqual(done.state, "completed", done.errors)
        self.assertEqual(node.running_count(), 0)


class OrderingTests(RuntimeTestCase):
    def test_priority_then_scheduled_at_then_id(self):
        now = timezone.now()
        ago = lambda s: now - datetime.timedelta(seconds=s)  # noqa: E731
        # Inserted before the node starts, in an order that differs from the expected one.
        specs = [("p9-old", 9, ago(50)), ("p0-new", 0, ago(10)), ("p5", 5, ago(40)),
                 ("p0-old", 0, ago(30)), ("p0-mid", 0, ago(20)), ("p9-new", 9, ago(5))]
        for n, priority, at in specs:
            w.RecordWorker.enqueue({"n": n}, priority=priority, scheduled_at=at)
        same_time = ago(1)
        tie = [w.RecordWorker.enqueue({"n": f"tie-{i}"}, priority=7, scheduled_at=same_time)
               for i in range(3)]
        self.assertEqual({j.state for j in tie}, {"available"})
        self.start_node({"ordered": 1})
        wait_until(lambda: len(record.order) == 9 and not Job.objects.exclude(
            state="completed").exists(), what="9 jobs to complete", describe=describe_jobs)
        self.assertEqual(record.order, ["p0-old", "p0-mid", "p0-new", "p5", "tie-0", "tie-1",
                                        "tie-2", "p9-old", "p9-new"])
        self.assertEqual(record.max_current, 1)

    def test_queue_limit_bounds_concurrency(self):
        for i in range(8):
            w.RecordWorker.enqueue({"n": i, "sleep": 0.05})
        self.start_node({"ordered": 3})
        wait_until(lambda: Job.objects.filter(state="completed").count() == 8,
                   what="8 jobs to complete", describe=describe_jobs)
        self.assertLessEqual(record.max_current, 3)
        self.assertGreaterEqual(record.max_current, 2)  # it did run jobs side by side

    def test_other_queues_are_not_run(self):
        self.start_node({"ordered": 2})
        elsewhere = w.ReturnWorker.enqueue({})  # queue "outcomes"
        mine = w.RecordWorker.enqueue({"n": 1})
        wait_for_state(mine, "completed")
        self.assertEqual(reload(elsewhere).state, "available")


class ShutdownTests(RuntimeTestCase):
    def test_stop_lets_running_jobs_finish_within_grace(self):
        node = self.start_node({"control": 2}, grace=30)
        job = w.GateWorker.enqueue({})
        wait_for_state(job, "executing")
        wait_until(lambda: job.pk in record.started, what="the job to start")
        timer = threading.Timer(0.3, record.gate.set)
        timer.start()
        self.addCleanup(timer.cancel)
        self.stop_node(node)
        done = reload(job)
        self.assertEqual(done.state, "completed")
        self.assertEqual(record.exited[job.pk], "returned")  # not interrupted
        self.assertNothingExecuting()

    def test_stop_puts_back_jobs_still_running_after_grace(self):
        node = self.start_node({"control": 2}, grace=0.3)
        jobs = [w.GateWorker.enqueue({}), w.AsyncGateWorker.enqueue({})]
        wait_until(lambda: len(record.started) == 2, what="2 jobs to start")
        self.stop_node(node)  # interrupts them: the gate stays shut (see record.exited below)
        self.assertNothingExecuting()
        for job in jobs:
            back = reload(job)
            self.assertEqual(back.state, "available")
            self.assertEqual(back.attempt, 0)  # the abandoned attempt is not counted
            self.assertEqual(len(back.errors), 1)
            self.assertIn("shut down", back.errors[0]["error"])
        self.assertEqual(record.exited, {jobs[0].pk: "NodeShutdown",
                                         jobs[1].pk: "CancelledError"})
        # The next node runs them.
        record.gate.set()
        self.start_node({"control": 2}, name="next")
        for job in jobs:
            self.assertEqual(wait_for_state(job, "completed").attempt, 1)

    def test_stop_releases_producer_rows(self):
        from django_jobs.models import Producer

        node = self.start_node({"control": 1, "ordered": 2})
        self.assertEqual(Producer.objects.filter(node=node.name).count(), 2)
        self.stop_node(node)
        self.assertEqual(Producer.objects.filter(node=node.name).count(), 0)
        self.assertNotIn(node, runtime_node.local_nodes)

    def test_nothing_is_lost_when_stopping_under_load(self):
        jobs = insert_jobs(w.RecordWorker, 300)
        node = self.start_node({"ordered": 10}, grace=2)
        wait_until(lambda: Job.objects.filter(state="completed").count() >= 30,
                   what="30 jobs to complete", describe=describe_jobs)
        self.stop_node(node)
        self.assertNothingExecuting()
        states = dict(Job.objects.values_list("pk", "state"))
        self.assertEqual(set(states.values()) - {"completed", "available"}, set())
        # Every attempt that returned was written as completed, none twice or lost.
        returned = {pk for pk, how in record.exited.items() if how == "returned"}
        completed = {pk for pk, state in states.items() if state == "completed"}
        self.assertEqual(completed, returned)
        self.assertEqual(Job.objects.filter(state="available").exclude(attempt=0).count(), 0)
        self.assertEqual(len(jobs), 300)


class WakeupTests(RuntimeTestCase):
    """Dispatch is triggered by inserts (NOTIFY on PostgreSQL, in-process wake-ups on
    SQLite), not by the poll interval: it is POLL s here, and each wait gives up at half of
    that, so a job that ran was woken for."""

    POLL = 60

    def test_insert_wakes_an_idle_producer(self):
        self.start_node({"outcomes": 2}, poll_interval=self.POLL)
        time.sleep(0.2)  # the producer's first fetch is over; it now waits for a wake-up
        for _ in range(3):
            wait_for_state(w.ReturnWorker.enqueue({}), "completed", timeout=self.POLL / 2)

    def test_insert_in_a_transaction_wakes_after_commit(self):
        self.start_node({"outcomes": 2}, poll_interval=self.POLL)
        time.sleep(0.2)
        with transaction.atomic():
            job = w.ReturnWorker.enqueue({})
            time.sleep(0.3)
        wait_for_state(job, "completed", timeout=self.POLL / 2)

    def test_stager_wakes_producers(self):
        self.start_node({"outcomes": 2}, poll_interval=self.POLL, plugins=True)
        time.sleep(0.2)
        job = w.ReturnWorker.enqueue({}, schedule_in=0.3)
        wait_for_state(job, "completed", timeout=self.POLL / 2)
