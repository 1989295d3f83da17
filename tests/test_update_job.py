"""``update_job``: changing a waiting job, validated as at build time, through the door."""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from django_jobs import InvalidJobError, UnknownOptionError, update_job
from django_jobs.models import Job, JobState
from django_jobs.pro.encrypted import SEALED

from .chain_workers import AccountWebhook
from .helpers import set_state
from .pro_workers import QUEUE, BusinessWorker, PlainWorker, SealedWorker
from .processes import RunjobsMixin
from .waits import wait_until
from .workers import NoopWorker, UniqueByEmailWorker


def in_seconds(seconds: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=seconds)


class UpdateJobTests(TestCase):
    def test_every_updatable_field(self):
        job = NoopWorker.enqueue({"a": 1}, meta={"keep": True, "drop": 1}, tags=["x"])
        updated = update_job(job, args={"a": 2}, meta={"new": "v", "drop": None},
                             priority=3, queue="other", tags=[" y ", "y", "z"],
                             max_attempts=7)
        self.assertEqual(updated.args, {"a": 2})
        self.assertEqual(updated.meta, {"keep": True, "new": "v"})
        self.assertEqual((updated.priority, updated.queue, updated.tags, updated.max_attempts),
                         (3, "other", ["y", "z"], 7))
        self.assertEqual(updated.state, JobState.AVAILABLE)
        self.assertEqual(Job.objects.get(pk=job.pk).queue, "other")

    def test_time_moves_the_job_between_available_and_scheduled(self):
        job = NoopWorker.enqueue({})
        later = update_job(job.pk, scheduled_at=in_seconds(3600))
        self.assertEqual(later.state, JobState.SCHEDULED)
        now = update_job(job.pk, schedule_in=0)
        self.assertEqual(now.state, JobState.AVAILABLE)
        retrying = set_state(NoopWorker.enqueue({}), JobState.RETRYABLE)
        self.assertEqual(update_job(retrying, schedule_in=60).state, JobState.RETRYABLE)

    def test_executing_and_finished_jobs_are_refused_and_unchanged(self):
        for state in (JobState.EXECUTING, JobState.COMPLETED, JobState.DISCARDED,
                      JobState.CANCELLED):
            with self.subTest(state):
                job = set_state(NoopWorker.enqueue({"a": 1}), state)
                with self.assertRaisesMessage(InvalidJobError, f"is {state}"):
                    update_job(job, args={"a": 2})
                self.assertEqual(Job.objects.get(pk=job.pk).args, {"a": 1})

    def test_bad_values_are_refused_with_the_build_time_errors(self):
        job = NoopWorker.enqueue({"a": 1})
        for changes, message in [
                ({"priority": 10}, "priority must be an integer from 0"),
                ({"queue": ""}, "queue must be a non-empty string"),
                ({"max_attempts": 0}, "max_attempts must be an integer from 1"),
                ({"tags": "x"}, "tags must be a list"),
                ({"meta": [1]}, "meta must be a dict"),
                ({"args": {"when": object()}}, "args"),
                ({"scheduled_at": datetime.datetime(2030, 1, 1)}, "timezone-aware")]:
            with self.subTest(changes), self.assertRaisesMessage(InvalidJobError, message):
                update_job(job, **changes)
        with self.assertRaisesMessage(UnknownOptionError, "did you mean 'priority'"):
            update_job(job, priorty=1)
        self.assertEqual(Job.objects.get(pk=job.pk).args, {"a": 1})

    def test_a_missing_job(self):
        with self.assertRaisesMessage(InvalidJobError, "does not exist"):
            update_job(10**9, priority=1)

    def test_structured_args_are_validated_and_cast(self):
        job = BusinessWorker.enqueue({"id": 1, "name": "a"})
        with self.assertRaises(ValidationError):
            update_job(job, args={"id": "not a number"})
        updated = update_job(job, args={"id": "7", "name": "b"})
        self.assertEqual(updated.args["id"], 7)

    def test_encrypted_args_are_sealed_again(self):
        job = SealedWorker.enqueue({"secret": "old"})
        updated = update_job(job, args={"secret": "new"})
        self.assertEqual(set(updated.args), {SEALED})
        self.assertNotIn("new", str(Job.objects.filter(pk=job.pk).values("args")[0]))
        self.assertNotEqual(updated.args, job.args)

    def test_unique_slot_follows_and_conflicts_are_refused(self):
        first = UniqueByEmailWorker.enqueue({"email": "a@example.com"})
        second = UniqueByEmailWorker.enqueue({"email": "b@example.com"})
        with self.assertRaisesMessage(InvalidJobError, "holds the unique slot"):
            update_job(second, args={"email": "a@example.com"})
        moved = update_job(second, args={"email": "c@example.com"})
        self.assertEqual(Job.objects.get(pk=first.pk).args["email"], "a@example.com")
        # The slot of b@ is free again, c@ is taken.
        self.assertFalse(UniqueByEmailWorker.enqueue({"email": "b@example.com"}).conflict)
        again = UniqueByEmailWorker.enqueue({"email": "c@example.com"})
        self.assertTrue(again.conflict)
        self.assertEqual(again.pk, moved.pk)

    def test_args_that_would_move_a_job_to_another_chain_are_refused(self):
        job = AccountWebhook.enqueue({"account": 1, "seq": 1})
        with self.assertRaisesMessage(InvalidJobError, "chain_id"):
            update_job(job, args={"account": 2, "seq": 1})
        self.assertEqual(update_job(job, args={"account": 1, "seq": 5}).args["seq"], 5)


class UpdateJobNodeTests(RunjobsMixin, TransactionTestCase):
    def test_a_job_moved_to_a_running_queue_runs_there(self):
        job = PlainWorker.enqueue({"n": 1}, queue="nobody-runs-this")
        self.start_runjobs("update", "--queue", f"{QUEUE}=2")
        update_job(job, queue=QUEUE, args={"n": 2})
        wait_until(lambda: Job.objects.get(pk=job.pk).state == JobState.COMPLETED, 60,
                   what="the moved job completed", describe=lambda: self.runjobs_report(""))
        self.assertEqual(Job.objects.get(pk=job.pk).args, {"n": 2})
