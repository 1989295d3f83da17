"""Unique jobs across the runtime's state transitions: the slot follows the job's state."""

import datetime

from django.utils import timezone

import django_jobs
from django_jobs.models import Job
from django_jobs.plugins.stager import stage_jobs

from . import runtime_workers as w
from .helpers import reload, set_state, wait_for_state
from .runtime_workers import RuntimeTestCase, record, wait_until

INCOMPLETE = {"period": "infinity", "states": "incomplete"}


class UniqueTransitionTests(RuntimeTestCase):
    def test_completed_job_releases_its_slot(self):
        first = w.UniqueIncompleteWorker.enqueue({"k": 1})
        dup = w.UniqueIncompleteWorker.enqueue({"k": 1})
        self.assertTrue(dup.conflict)
        self.assertEqual(dup.pk, first.pk)
        self.start_node({"unique": 2})
        wait_for_state(first, "completed")
        second = w.UniqueIncompleteWorker.enqueue({"k": 1})
        self.assertFalse(second.conflict)
        self.assertNotEqual(second.pk, first.pk)
        wait_for_state(second, "completed")
        self.assertEqual(Job.objects.filter(worker=w.UniqueIncompleteWorker.worker_path).count(),
                         2)

    def test_executing_job_keeps_its_slot(self):
        self.start_node({"control": 1})
        job = w.GateWorker.enqueue({"k": 1}, unique=INCOMPLETE)
        wait_until(lambda: job.pk in record.started, what="the job to start")
        self.assertEqual(reload(job).state, "executing")
        dup = w.GateWorker.enqueue({"k": 1}, unique=INCOMPLETE)
        self.assertTrue(dup.conflict)
        self.assertEqual(dup.pk, job.pk)
        record.gate.set()
        wait_for_state(job, "completed")
        self.assertFalse(w.GateWorker.enqueue({"k": 1}, unique=INCOMPLETE).conflict)

    def test_retryable_job_keeps_its_slot_until_cancelled(self):
        self.start_node({"unique": 1})
        job = w.UniqueIncompleteWorker.enqueue({"k": 2, "fail": True})
        wait_for_state(job, "retryable")
        dup = w.UniqueIncompleteWorker.enqueue({"k": 2, "fail": True})
        self.assertTrue(dup.conflict)
        self.assertEqual(dup.pk, job.pk)
        self.assertTrue(django_jobs.cancel_job(job))
        fresh = w.UniqueIncompleteWorker.enqueue({"k": 2, "fail": True})
        self.assertFalse(fresh.conflict)

    def test_snoozed_job_keeps_its_slot_and_staging_keeps_it(self):
        self.start_node({"outcomes": 1})
        job = w.SnoozeWorker.enqueue({"seconds": 60}, unique=INCOMPLETE)
        wait_for_state(job, "scheduled")
        self.assertTrue(w.SnoozeWorker.enqueue({"seconds": 60}, unique=INCOMPLETE).conflict)
        Job.objects.filter(pk=job.pk).update(scheduled_at=timezone.now())

        stage_jobs(timezone.now(), 10)
        self.assertIn(reload(job).state, ("available", "executing", "scheduled"))
        self.assertTrue(w.SnoozeWorker.enqueue({"seconds": 60}, unique=INCOMPLETE).conflict)

    def test_discarded_and_cancelled_results_release_the_slot(self):
        self.start_node({"outcomes": 2})
        for worker in (w.DiscardWorker, w.CancelWorker):
            job = worker.enqueue({"reason": "r"}, unique=INCOMPLETE)
            wait_for_state(job, "discarded", "cancelled")
            again = worker.enqueue({"reason": "r"}, unique=INCOMPLETE)
            self.assertFalse(again.conflict, worker.__name__)

    def test_successful_states_keep_the_slot_after_completion(self):
        self.start_node({"outcomes": 1})
        job = w.ReturnWorker.enqueue({"k": 3}, unique={"period": 60})
        wait_for_state(job, "completed")
        dup = w.ReturnWorker.enqueue({"k": 3}, unique={"period": 60})
        self.assertTrue(dup.conflict)
        self.assertEqual(dup.pk, job.pk)

    def test_retry_of_finished_job_while_a_new_duplicate_exists(self):
        self.start_node({"unique": 1})
        old = w.UniqueIncompleteWorker.enqueue({"k": 4})
        wait_for_state(old, "completed")
        new = w.UniqueIncompleteWorker.enqueue({"k": 4})
        self.assertFalse(new.conflict)
        self.assertTrue(django_jobs.retry_job(old))  # must not raise IntegrityError
        wait_for_state(old, "completed")
        wait_for_state(new, "completed")

    def test_retry_all_of_old_holders_with_states_all(self):
        # states "all": a completed job holds the slot until its period is over; a newer
        # duplicate then takes the slot over. Retrying the old ones must not collide.
        olds = []
        for _ in range(2):
            old = w.UniqueAllWorker.enqueue({"k": 5})
            self.assertFalse(old.conflict)
            set_state(old, "completed", completed_at=timezone.now(),
                      inserted_at=timezone.now() - datetime.timedelta(minutes=5))
            olds.append(old)
        holder = w.UniqueAllWorker.enqueue({"k": 5})
        self.assertFalse(holder.conflict)
        self.assertEqual(django_jobs.retry_all_jobs(olds), 2)
        self.assertEqual({reload(o).state for o in olds}, {"available"})
        # The current holder still blocks duplicates.
        self.assertEqual(w.UniqueAllWorker.enqueue({"k": 5}).pk, holder.pk)

    def test_retry_of_discarded_holder_while_duplicate_waits(self):
        self.start_node({"unique": 1})
        old = w.UniqueIncompleteWorker.enqueue({"k": 6, "fail": True}, max_attempts=1)
        wait_for_state(old, "discarded")
        new = w.UniqueIncompleteWorker.enqueue({"k": 6, "fail": True}, max_attempts=1,
                                               schedule_in=60)
        self.assertFalse(new.conflict)
        self.assertTrue(django_jobs.retry_job(old))
        self.assertEqual(wait_for_state(old, "discarded").attempt, 2)
        self.assertEqual(reload(new).state, "scheduled")

    def test_rescued_and_put_back_jobs_keep_their_slot(self):
        node = self.start_node({"control": 1}, grace=0.1)
        job = w.GateWorker.enqueue({"k": 7}, unique=INCOMPLETE)
        wait_until(lambda: job.pk in record.started, what="the job to start")
        self.stop_node(node)  # the job is put back to available
        self.assertEqual(reload(job).state, "available")
        self.assertEqual(w.GateWorker.enqueue({"k": 7}, unique=INCOMPLETE).pk, job.pk)
