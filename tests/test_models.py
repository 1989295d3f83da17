"""The ``Job`` model and its schema: constraints, the unique slot, indexes, migrations."""

import datetime
import io

from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import SimpleTestCase, TestCase
from django.utils import timezone

from django_jobs.models import (FINISHED_STATES, STATE_BITS, Job, JobState, Producer,
                                unique_key_after)
from django_jobs.unique import STATE_GROUPS

from .workers import NoopWorker, UniqueWorker


def slot_of(job):
    return Job.objects.filter(pk=job.pk).values_list("unique_slot", flat=True).get()


class ConstraintTests(TestCase):
    def setUp(self):
        self.job = NoopWorker.enqueue({"a": 1}, max_attempts=3)
        self.jobs = Job.objects.filter(pk=self.job.pk)

    def assertRefused(self, **changes):
        with self.assertRaises(IntegrityError), transaction.atomic():
            self.jobs.update(**changes)
        # Nothing changed, and the connection is usable after the rolled-back savepoint.
        row = self.jobs.get()
        for name in changes:
            self.assertEqual(getattr(row, name), getattr(self.job, name), name)

    def test_priority_range(self):
        self.assertRefused(priority=10)
        self.assertRefused(priority=99)
        for priority in (0, 9):
            self.jobs.update(priority=priority)
            self.assertEqual(self.jobs.get().priority, priority)

    def test_attempt_within_max_attempts(self):
        self.assertRefused(attempt=4)
        self.jobs.update(attempt=3)
        self.assertEqual(self.jobs.get().attempt, 3)
        with self.assertRaises(IntegrityError), transaction.atomic():
            self.jobs.update(max_attempts=2)  # now attempt 3 > max_attempts 2

    def test_max_attempts_positive(self):
        self.assertRefused(max_attempts=0)

    def test_queue_and_worker_not_empty(self):
        self.assertRefused(queue="")
        self.assertRefused(worker="")

    def test_state_must_be_known(self):
        self.assertRefused(state="finished")
        self.assertRefused(state="")

    def test_every_state_is_accepted(self):
        for state in JobState.values:
            self.jobs.update(state=state)
            self.assertEqual(self.jobs.get().state, state)

    def test_producer_queue_not_empty(self):
        now = timezone.now()
        Producer.objects.create(node="n", queue="default", limit=1, started_at=now,
                                heartbeat_at=now)
        with self.assertRaises(IntegrityError), transaction.atomic():
            Producer.objects.create(node="n", queue="", limit=1, started_at=now,
                                    heartbeat_at=now)
        self.assertEqual(Producer.objects.count(), 1)


class UniqueSlotTests(TestCase):
    def test_slot_is_the_key_only_while_the_state_is_in_the_mask(self):
        for group, states in STATE_GROUPS.items():
            for n, state in enumerate(JobState.values):
                with self.subTest(group=group, state=state):
                    job = NoopWorker.enqueue({"g": group, "n": n},
                                             unique={"states": group, "period": 60})
                    Job.objects.filter(pk=job.pk).update(state=state)
                    self.assertEqual(slot_of(job), job.unique_key if state in states else None)

    def test_slot_follows_state_changes(self):
        job = UniqueWorker.enqueue({"id": 1})  # successful
        self.assertEqual(slot_of(job), job.unique_key)
        for state, holds in [("executing", True), ("retryable", True), ("available", True),
                             ("completed", True), ("discarded", False), ("cancelled", False),
                             ("scheduled", True)]:
            Job.objects.filter(pk=job.pk).update(state=state)
            self.assertEqual(slot_of(job) is not None, holds, state)

    def test_mask_bits(self):
        job = NoopWorker.enqueue({}, unique={"states": ["completed", "available"]})
        self.assertEqual(job.unique_states,
                         STATE_BITS[JobState.COMPLETED] | STATE_BITS[JobState.AVAILABLE])
        self.assertEqual(Job.objects.get(pk=job.pk).unique_states, job.unique_states)

    def test_slot_is_null_without_a_key(self):
        job = NoopWorker.enqueue({})
        for state in JobState.values:
            Job.objects.filter(pk=job.pk).update(state=state)
            self.assertIsNone(slot_of(job))
        # A mask without a key holds nothing either.
        Job.objects.filter(pk=job.pk).update(unique_states=255, state="available")
        self.assertIsNone(slot_of(job))

    def test_slot_cleared_with_the_key(self):
        job = UniqueWorker.enqueue({"id": 1})
        Job.objects.filter(pk=job.pk).update(unique_key=None)
        self.assertIsNone(slot_of(job))

    def test_non_unique_jobs_never_clash(self):
        for _ in range(5):
            NoopWorker.enqueue({"same": True})
        self.assertEqual(Job.objects.filter(unique_slot__isnull=True).count(), 5)

    def test_index_refuses_a_second_slot_holder(self):
        # A job re-entering its unique states while another holds the key is refused by the
        # database; this is why every state change must also set unique_key_after(state).
        first = UniqueWorker.enqueue({"id": 1})
        Job.objects.filter(pk=first.pk).update(state=JobState.CANCELLED)
        second = UniqueWorker.enqueue({"id": 1})
        self.assertFalse(second.conflict)
        self.assertEqual(slot_of(second), second.unique_key)
        with self.assertRaises(IntegrityError), transaction.atomic():
            Job.objects.filter(pk=first.pk).update(state=JobState.AVAILABLE)
        self.assertEqual(Job.objects.get(pk=first.pk).state, JobState.CANCELLED)
        # Once the holder has left its states, the old job may come back.
        Job.objects.filter(pk=second.pk).update(state=JobState.DISCARDED)
        Job.objects.filter(pk=first.pk).update(state=JobState.AVAILABLE)
        self.assertEqual(slot_of(first), first.unique_key)


    def test_unique_key_after_releases_the_key_for_good(self):
        first = UniqueWorker.enqueue({"id": 1})  # successful: not discarded/cancelled
        jobs = Job.objects.filter(pk=first.pk)
        jobs.update(state=JobState.EXECUTING, unique_key=unique_key_after(JobState.EXECUTING))
        self.assertEqual(jobs.get().unique_key, first.unique_key)  # still a unique state
        jobs.update(state=JobState.CANCELLED, unique_key=unique_key_after(JobState.CANCELLED))
        self.assertIsNone(jobs.get().unique_key)
        second = UniqueWorker.enqueue({"id": 1})
        self.assertFalse(second.conflict)
        # Retrying the cancelled job no longer collides with the new holder.
        jobs.update(state=JobState.AVAILABLE, unique_key=unique_key_after(JobState.AVAILABLE))
        self.assertIsNone(slot_of(first))
        self.assertEqual(slot_of(second), second.unique_key)
        self.assertTrue(UniqueWorker.enqueue({"id": 1}).conflict)


class SchemaTests(TestCase):
    def test_indexes_and_constraints_exist(self):
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, Job._meta.db_table)
        names = set(constraints)
        for name in ("django_jobs_fetch", "django_jobs_stage", "django_jobs_executing",
                     "django_jobs_prune", "django_jobs_batch_members", "django_jobs_chain",
                     "django_jobs_chain_waiting", "django_jobs_chain_active",
                     "django_jobs_state_queue", "django_jobs_unique_slot",
                     "django_jobs_chain_running"):
            with self.subTest(index=name):
                self.assertIn(name, names)
        self.assertTrue(constraints["django_jobs_unique_slot"]["unique"])
        self.assertEqual(constraints["django_jobs_unique_slot"]["columns"], ["unique_slot"])

    def test_migrations_are_in_sync_with_the_models(self):
        out = io.StringIO()
        try:
            call_command("makemigrations", "django_jobs", "--check", "--dry-run",
                         stdout=out, stderr=out)
        except SystemExit:
            self.fail(f"the models have changes without a migration:\n{out.getvalue()}")
        self.assertIn("No changes detected", out.getvalue())

    def test_all_migrations_applied(self):
        out = io.StringIO()
        try:
            call_command("migrate", "django_jobs", "--check", stdout=out, stderr=out)
        except SystemExit:
            self.fail(f"unapplied migrations:\n{out.getvalue()}")


class JobModelTests(SimpleTestCase):
    def test_states(self):
        self.assertEqual(JobState.values, ["available", "scheduled", "suspended", "executing",
                                           "retryable", "completed", "discarded", "cancelled"])
        self.assertEqual(set(FINISHED_STATES), {"completed", "discarded", "cancelled"})

    def test_state_bits_are_distinct_powers_of_two(self):
        bits = list(STATE_BITS.values())
        self.assertEqual(set(STATE_BITS), set(JobState.values))
        self.assertEqual(len(set(bits)), len(bits))
        for bit in bits:
            self.assertEqual(bit & (bit - 1), 0)
        self.assertLessEqual(sum(bits), 32767)  # fits the PositiveSmallIntegerField mask

    def test_defaults(self):
        job = Job(worker="tests.workers.NoopWorker")
        self.assertEqual((job.state, job.queue, job.attempt, job.max_attempts, job.priority),
                         ("available", "default", 0, 20, 0))
        self.assertEqual((job.args, job.meta, job.tags, job.errors), ({}, {}, [], []))
        self.assertFalse(job.conflict)
        self.assertIsNone(job.unique_key)

    def test_str_and_repr(self):
        job = NoopWorker.new({"a": 1})
        self.assertEqual(str(job), "tests.workers.NoopWorker#new (available)")
        self.assertIn("worker='tests.workers.NoopWorker'", repr(job))
        self.assertIn("args={'a': 1}", repr(job))

    def test_finished_at(self):
        job = Job()
        self.assertIsNone(job.finished_at)
        at = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
        job.cancelled_at = at
        self.assertEqual(job.finished_at, at)
        job.completed_at = at + datetime.timedelta(seconds=1)
        self.assertEqual(job.finished_at, job.completed_at)
