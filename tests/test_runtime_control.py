"""Queue and job control (django_jobs.pause_queue, scale_queue, cancel_job, ...) against a
running node: applied at once to the nodes of this process, by the next heartbeat (about a
second) elsewhere."""

import threading

from django.db import connection
from django.utils import timezone

import django_jobs
from django_jobs.exceptions import InvalidJobError
from django_jobs.models import Job, Producer
from django_jobs.runtime.node import Node

from . import runtime_workers as w
from .helpers import producer_row, reload, set_state, wait_for_state
from .runtime_workers import RuntimeTestCase, next_heartbeat, record, wait_until
from .waits import holds_for, join_all

Q = "control"


def other_producer(queue=Q, node="other-node", limit=4):
    return producer_row(node, queue, limit=limit)


class PauseResumeTests(RuntimeTestCase):
    def start_node(self, queues, **options):
        # Run one job first: the producer's first fetch (which opens its connection) is then
        # over. A fetch already under way when the queue is paused may still claim jobs; the
        # tests pause an idle producer.
        node = super().start_node(queues, **options)
        wait_for_state(w.RecordWorker.enqueue({"n": "warm-up"}, queue=Q), "completed")
        return node

    def assertPausedBehaviour(self, node):
        wait_until(lambda: node.producers[Q].paused, what="the producer to be paused")
        next_heartbeat(node)  # past the heartbeat race (HeartbeatRaceTests)
        self.assertTrue(node.producers[Q].paused)
        job = w.RecordWorker.enqueue({"n": 1}, queue=Q)
        self.assertTrue(holds_for(lambda: reload(job).state == "available", 1.2),
                        "a paused queue fetched a job")
        return job

    def test_pause_and_resume_everywhere(self):
        node = self.start_node({Q: 2})
        other = other_producer()
        self.assertEqual(django_jobs.pause_queue(Q), 2)
        self.assertEqual(set(Producer.objects.filter(queue=Q).values_list("paused", flat=True)),
                         {True})
        job = self.assertPausedBehaviour(node)
        self.assertEqual(django_jobs.resume_queue(Q), 2)
        self.assertFalse(node.producers[Q].paused, "not resumed at once in this process")
        wait_for_state(job, "completed")
        self.assertFalse(Producer.objects.get(pk=other.pk).paused)

    def test_pause_is_kept_across_heartbeats(self):
        node = self.start_node({Q: 2})
        django_jobs.pause_queue(Q)
        self.assertPausedBehaviour(node)  # over a heartbeat: the row says paused
        self.assertTrue(node.producers[Q].paused)

    def test_pause_local_only_touches_this_process(self):
        node = self.start_node({Q: 2})
        other = other_producer()
        self.assertEqual(django_jobs.pause_queue(Q, local=True), 1)
        self.assertFalse(Producer.objects.get(pk=other.pk).paused)
        self.assertTrue(Producer.objects.get(uuid=node.producers[Q].uuid).paused)
        job = self.assertPausedBehaviour(node)
        self.assertEqual(django_jobs.resume_queue(Q, local=True), 1)
        self.assertFalse(node.producers[Q].paused, "not resumed at once in this process")
        wait_for_state(job, "completed")

    def test_pause_one_node_by_name(self):
        node = self.start_node({Q: 2})
        other = other_producer()
        self.assertEqual(django_jobs.pause_queue(Q, node="other-node"), 1)
        self.assertTrue(Producer.objects.get(pk=other.pk).paused)
        self.assertFalse(node.producers[Q].paused)
        wait_for_state(w.RecordWorker.enqueue({"n": 1}, queue=Q), "completed")

    def test_pause_written_by_another_process_is_applied_by_the_heartbeat(self):
        # What another process's pause_queue leaves behind, without any message to this one.
        node = self.start_node({Q: 2})
        Producer.objects.filter(queue=Q).update(paused=True)
        job = self.assertPausedBehaviour(node)
        Producer.objects.filter(queue=Q).update(paused=False)
        wait_for_state(job, "completed")

    def test_pause_leaves_other_queues_running(self):
        node = self.start_node({Q: 2, "ordered": 2})
        django_jobs.pause_queue(Q)
        wait_until(lambda: node.producers[Q].paused, what="the producer to be paused")
        self.assertFalse(node.producers["ordered"].paused)
        wait_for_state(w.RecordWorker.enqueue({"n": 1}), "completed")

    def test_running_jobs_finish_when_paused(self):
        node = self.start_node({Q: 2})
        job = w.GateWorker.enqueue({})
        wait_until(lambda: job.pk in record.started, what="the job to start")
        django_jobs.pause_queue(Q)
        wait_until(lambda: node.producers[Q].paused, what="the producer to be paused")
        record.gate.set()
        wait_for_state(job, "completed")

    def test_bad_queue_name(self):
        for bad in ("", " padded "):
            with self.assertRaises(InvalidJobError):
                django_jobs.pause_queue(bad)


class ScaleTests(RuntimeTestCase):
    def test_scale_up_runs_more_jobs_at_once(self):
        node = self.start_node({Q: 1})
        jobs = [w.GateWorker.enqueue({}) for _ in range(5)]
        self.assertRunningAtOnce(1, 0.5)
        self.assertEqual(django_jobs.scale_queue(Q, 3), 1)
        self.assertEqual(Producer.objects.get(uuid=node.producers[Q].uuid).limit, 3)
        self.assertRunningAtOnce(3)
        record.gate.set()
        for job in jobs:
            wait_for_state(job, "completed")
        self.assertEqual(record.max_current, 3)

    def test_scale_down_runs_fewer_jobs_at_once(self):
        node = self.start_node({Q: 4})
        self.assertEqual(django_jobs.scale_queue(Q, 1, local=True), 1)
        next_heartbeat(node)  # past the heartbeat race (HeartbeatRaceTests)
        self.assertEqual(node.producers[Q].limit, 1)
        jobs = [w.GateWorker.enqueue({}) for _ in range(3)]
        self.assertRunningAtOnce(1, 0.6)
        record.gate.set()
        for job in jobs:
            wait_for_state(job, "completed")
        self.assertEqual(record.max_current, 1)

    def test_scale_written_by_another_process_is_applied_by_the_heartbeat(self):
        self.start_node({Q: 1})
        for _ in range(3):
            w.GateWorker.enqueue({})
        wait_until(lambda: record.current == 1, what="1 job running")
        Producer.objects.filter(queue=Q).update(limit=2)
        wait_until(lambda: record.current == 2, what="2 jobs running")

    def test_scale_one_node_by_name(self):
        node = self.start_node({Q: 2})
        other = other_producer(limit=2)
        self.assertEqual(django_jobs.scale_queue(Q, 7, node="other-node"), 1)
        self.assertEqual(Producer.objects.get(pk=other.pk).limit, 7)
        self.assertEqual(Producer.objects.get(uuid=node.producers[Q].uuid).limit, 2)
        self.assertEqual(node.producers[Q].limit, 2)

    def test_invalid_limits(self):
        for bad in (0, -1, True, "3", 2.5, None):
            with self.subTest(limit=bad), self.assertRaises(InvalidJobError):
                django_jobs.scale_queue(Q, bad)


class CancelTests(RuntimeTestCase):
    def test_cancel_executing_sync_job_stops_it(self):
        node = self.start_node({Q: 2})
        job = w.GateWorker.enqueue({})
        wait_for_state(job, "executing")
        wait_until(lambda: job.pk in record.started, what="the job to start")
        self.assertTrue(django_jobs.cancel_job(job))
        # Stopped by the cancel, not released by the gate (it stays shut until later).
        wait_until(lambda: record.exited.get(job.pk), what="the job to stop")
        self.assertEqual(record.exited[job.pk], "JobCancelled")
        wait_until(lambda: node.running_count() == 0, what="the node to run nothing")
        done = reload(job)
        self.assertEqual(done.state, "cancelled")
        self.assertIsNotNone(done.cancelled_at)
        # The pool thread is free: the node still runs jobs.
        record.gate.set()
        wait_for_state(w.GateWorker.enqueue({}), "completed")

    def test_cancel_executing_async_job_stops_it(self):
        node = self.start_node({Q: 2})
        job = w.AsyncGateWorker.enqueue({})
        wait_until(lambda: job.pk in record.started, what="the job to start")
        self.assertTrue(django_jobs.cancel_job(job.pk))
        wait_until(lambda: record.exited.get(job.pk), what="the job to stop")
        self.assertEqual(record.exited[job.pk], "CancelledError")
        wait_until(lambda: node.running_count() == 0, what="the node to run nothing")
        self.assertEqual(reload(job).state, "cancelled")

    def test_cancel_written_by_another_process_stops_the_job(self):
        # Another process cancels the row (PostgreSQL also NOTIFYs; the heartbeat must do on
        # its own): the node notices within about a second.
        node = self.start_node({Q: 2})
        job = w.GateWorker.enqueue({})
        wait_until(lambda: job.pk in record.started, what="the job to start")
        set_state(job, "cancelled", cancelled_at=timezone.now())
        wait_until(lambda: record.exited.get(job.pk), what="the job to stop")
        self.assertEqual(record.exited[job.pk], "JobCancelled")
        wait_until(lambda: node.running_count() == 0, what="the node to run nothing")
        self.assertEqual(reload(job).state, "cancelled")

    def test_cancel_waiting_jobs_and_finished_ones(self):
        available = w.ReturnWorker.enqueue({})
        scheduled = w.ReturnWorker.enqueue({}, schedule_in=60)
        done = set_state(w.ReturnWorker.enqueue({}), "completed", completed_at=timezone.now())
        self.assertTrue(django_jobs.cancel_job(available))
        self.assertTrue(django_jobs.cancel_job(scheduled.pk))
        self.assertFalse(django_jobs.cancel_job(done))
        self.assertEqual(reload(done).state, "completed")
        for job in (available, scheduled):
            row = reload(job)
            self.assertEqual(row.state, "cancelled")
            self.assertIsNotNone(row.cancelled_at)
        # A cancelled job never runs.
        self.start_node({"outcomes": 2})
        wait_for_state(w.ReturnWorker.enqueue({}), "completed")
        self.assertEqual(reload(available).state, "cancelled")

    def test_cancel_all_jobs_with_queryset(self):
        jobs = [w.ReturnWorker.enqueue({"i": i}, queue="bulk") for i in range(4)]
        set_state(jobs[0], "discarded", discarded_at=timezone.now())
        w.ReturnWorker.enqueue({}, queue="elsewhere")
        self.assertEqual(django_jobs.cancel_all_jobs(Job.objects.filter(queue="bulk")), 3)
        self.assertEqual(list(Job.objects.filter(queue="bulk").order_by("pk")
                              .values_list("state", flat=True)),
                         ["discarded", "cancelled", "cancelled", "cancelled"])
        self.assertEqual(Job.objects.get(queue="elsewhere").state, "available")


class RetryDeleteTests(RuntimeTestCase):
    def test_retry_discarded_job_runs_again(self):
        job = set_state(w.ReturnWorker.enqueue({}, max_attempts=1), "discarded", attempt=1,
                        discarded_at=timezone.now(),
                        errors=[{"at": timezone.now().isoformat(), "attempt": 1,
                                 "error": "old"}])
        self.start_node({"outcomes": 2})
        self.assertTrue(django_jobs.retry_job(job))
        done = wait_for_state(job, "completed")
        self.assertEqual(done.attempt, 2)
        self.assertEqual(done.max_attempts, 2)  # one more attempt was given
        self.assertIsNone(done.discarded_at)
        self.assertEqual(done.errors[0]["error"], "old")  # history kept

    def test_retry_makes_finished_and_waiting_jobs_available(self):
        now = timezone.now()
        jobs = {state: w.ReturnWorker.enqueue({"s": state}, queue="bulk", schedule_in=60)
                for state in ("scheduled", "retryable", "completed", "cancelled", "discarded")}
        set_state(jobs["retryable"], "retryable", attempt=1)
        set_state(jobs["completed"], "completed", completed_at=now, attempt=1)
        set_state(jobs["cancelled"], "cancelled", cancelled_at=now)
        set_state(jobs["discarded"], "discarded", discarded_at=now)
        self.assertEqual(django_jobs.retry_all_jobs(Job.objects.filter(queue="bulk")), 5)
        for job in Job.objects.filter(queue="bulk"):
            self.assertEqual(job.state, "available")
            self.assertLessEqual(job.scheduled_at, timezone.now())
            self.assertIsNone(job.finished_at)

    def test_retry_leaves_available_and_executing_jobs_alone(self):
        available = w.ReturnWorker.enqueue({})
        executing = set_state(w.ReturnWorker.enqueue({}), "executing", attempt=1)
        self.assertFalse(django_jobs.retry_job(available))
        self.assertFalse(django_jobs.retry_job(executing))
        self.assertEqual(reload(executing).state, "executing")
        self.assertEqual(django_jobs.retry_all_jobs([available.pk, executing]), 0)

    def test_delete_refuses_executing_jobs(self):
        executing = set_state(w.ReturnWorker.enqueue({}), "executing", attempt=1)
        done = set_state(w.ReturnWorker.enqueue({}), "completed", completed_at=timezone.now())
        self.assertFalse(django_jobs.delete_job(executing))
        self.assertTrue(Job.objects.filter(pk=executing.pk).exists())
        self.assertTrue(django_jobs.delete_job(done.pk))
        self.assertFalse(Job.objects.filter(pk=done.pk).exists())

    def test_delete_refuses_a_job_a_node_is_running(self):
        self.start_node({Q: 1})
        job = w.GateWorker.enqueue({})
        wait_until(lambda: job.pk in record.started, what="the job to start")
        self.assertFalse(django_jobs.delete_job(job))
        record.gate.set()
        wait_for_state(job, "completed")
        self.assertTrue(django_jobs.delete_job(job))

    def test_delete_all_jobs_with_queryset(self):
        jobs = [w.ReturnWorker.enqueue({"i": i}, queue="bulk") for i in range(4)]
        set_state(jobs[0], "executing", attempt=1)
        keep = w.ReturnWorker.enqueue({}, queue="elsewhere")
        self.assertEqual(django_jobs.delete_all_jobs(Job.objects.filter(queue="bulk")), 3)
        self.assertEqual(list(Job.objects.filter(queue="bulk").values_list("pk", flat=True)),
                         [jobs[0].pk])
        self.assertTrue(Job.objects.filter(pk=keep.pk).exists())
        self.assertEqual(django_jobs.delete_all_jobs([]), 0)


class HeartbeatRaceTests(RuntimeTestCase):
    """A queue control call that lands while a heartbeat is between reading the producer rows
    and applying them. Reproduced deterministically: the heartbeat of a node (not started, so
    no other thread runs) is called directly, and the control call is made by another thread
    right after the heartbeat's SELECT of the rows has run.

    Regression: the heartbeat used to apply the values it read unconditionally, undoing a
    pause/resume/scale that control() applied in between (until the next heartbeat). It now
    applies a row value only when it changed since the previous heartbeat.
    """

    def race(self, control_call):
        node = Node(queues={Q: 4}, name="race-node", plugins=False)
        producer = node.producers[Q]
        producer_row(node.name, Q, limit=4, uuid=producer.uuid)
        fired = []

        def during(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if (not fired and sql.lstrip().upper().startswith("SELECT")
                    and "django_jobs_producer" in sql):
                fired.append(sql)

                def other_thread():
                    try:
                        control_call(node)
                    finally:
                        connection.close()

                thread = threading.Thread(target=other_thread, name="control call",
                                          daemon=True)
                thread.start()
                join_all([thread], what="the control call made during the heartbeat")
            return result

        with connection.execute_wrapper(during):
            node._heartbeat()
        self.assertTrue(fired, "the heartbeat did not read the producer rows")
        return node, producer

    @staticmethod
    def control(node, message, **row):
        # What pause_queue/scale_queue(local=True) do: the row, then this process's node.
        Producer.objects.filter(queue=Q).update(**row)
        node.control({"node": None, "queue": Q, **message})

    def test_pause_during_a_heartbeat_is_kept(self):
        _node, producer = self.race(lambda n: self.control(n, {"action": "pause"}, paused=True))
        self.assertTrue(Producer.objects.get(uuid=producer.uuid).paused)
        self.assertTrue(producer.paused, "the heartbeat resumed a queue just paused")

    def test_scale_during_a_heartbeat_is_kept(self):
        _node, producer = self.race(
            lambda n: self.control(n, {"action": "scale", "limit": 1}, limit=1))
        self.assertEqual(Producer.objects.get(uuid=producer.uuid).limit, 1)
        self.assertEqual(producer.limit, 1, "the heartbeat scaled a queue back up")

    def test_heartbeat_applies_changes_made_elsewhere(self):
        # The same call without a race: rows changed by another process are applied.
        node = Node(queues={Q: 4}, name="race-node", plugins=False)
        producer = node.producers[Q]
        now = producer_row(node.name, Q, limit=4, uuid=producer.uuid).heartbeat_at
        Producer.objects.filter(uuid=producer.uuid).update(paused=True, limit=2)
        node._heartbeat()
        self.assertTrue(producer.paused)
        self.assertEqual(producer.limit, 2)
        self.assertGreater(Producer.objects.get(uuid=producer.uuid).heartbeat_at, now)


class HeartbeatTests(RuntimeTestCase):
    def test_heartbeat_refreshes_and_rewrites_producer_rows(self):
        node = self.start_node({Q: 3, "ordered": 1})
        uuids = {p.uuid for p in node.producers.values()}
        started = timezone.now()
        next_heartbeat(node)
        self.assertTrue(all(row.heartbeat_at > started for row in Producer.objects.all()))
        # Rows removed (say by the lifeline of another node during a network split) are
        # written again, with this node's current settings.
        django_jobs.pause_queue(Q, local=True)
        Producer.objects.all().delete()
        wait_until(lambda: Producer.objects.count() == 2, what="the rows written again")
        self.assertEqual(set(Producer.objects.values_list("uuid", flat=True)), uuids)
        row = Producer.objects.get(queue=Q)
        self.assertEqual((row.node, row.limit, row.paused), (node.name, 3, True))
