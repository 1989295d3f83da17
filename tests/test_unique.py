"""Unique jobs: what counts as a duplicate, and what an insert does about it."""

import datetime

from django.test import TestCase
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobError
from django_jobs.models import Job, JobState
from django_jobs.unique import STATE_GROUPS, UniqueSpec, parse_unique

from .workers import (ArgsOnlyUniqueA, ArgsOnlyUniqueB, ImmediateUniqueWorker, NoopWorker,
                      ReplaceAnyStateWorker, ScheduledTimestampWorker, UniqueByEmailWorker,
                      UniqueWorker)

ALL_STATES = set(JobState.values)
S = JobState


def age(job, seconds, field="inserted_at"):
    """Move ``field`` of ``job`` ``seconds`` into the past, in the database."""
    Job.objects.filter(pk=job.pk).update(
        **{field: timezone.now() - datetime.timedelta(seconds=seconds)})


def set_state(job, state):
    Job.objects.filter(pk=job.pk).update(state=state)


class ConflictTests(TestCase):
    def test_duplicate_returns_the_existing_job_flagged(self):
        first = UniqueWorker.enqueue({"id": 1})
        self.assertFalse(first.conflict)
        built = UniqueWorker.new({"id": 1})
        second = django_jobs.insert(built)
        self.assertTrue(second.conflict)
        self.assertEqual(second.pk, first.pk)
        self.assertEqual(second.args, {"id": 1})
        self.assertEqual(second.state, JobState.AVAILABLE)
        self.assertEqual(second.inserted_at, Job.objects.get(pk=first.pk).inserted_at)
        self.assertIsNone(built.pk)  # the new job was not written
        self.assertEqual(Job.objects.count(), 1)

    def test_conflict_is_not_persisted_on_the_model(self):
        UniqueWorker.enqueue({"id": 1})
        UniqueWorker.enqueue({"id": 1})
        self.assertFalse(Job.objects.get().conflict)

    def test_different_args_are_not_duplicates(self):
        a = UniqueWorker.enqueue({"id": 1})
        b = UniqueWorker.enqueue({"id": 2})
        self.assertFalse(b.conflict)
        self.assertNotEqual(a.pk, b.pk)
        self.assertEqual(Job.objects.count(), 2)

    def test_same_args_in_another_form_are_duplicates(self):
        a = UniqueWorker.enqueue({"a": 1, "b": (1, 2)})
        b = UniqueWorker.enqueue({"b": [1, 2], "a": 1})
        self.assertTrue(b.conflict)
        self.assertEqual(a.pk, b.pk)

    def test_non_unique_jobs_never_conflict(self):
        for _ in range(3):
            self.assertFalse(NoopWorker.enqueue({"id": 1}).conflict)
        self.assertFalse(UniqueWorker.enqueue({"id": 1}, unique=False).conflict)
        self.assertFalse(UniqueWorker.enqueue({"id": 1}, unique=False).conflict)
        self.assertEqual(Job.objects.count(), 5)

    def test_unique_per_job_on_a_plain_worker(self):
        a = NoopWorker.enqueue({"id": 1}, unique={"period": 30})
        b = NoopWorker.enqueue({"id": 1}, unique={"period": 30})
        self.assertTrue(b.conflict)
        self.assertEqual(a.pk, b.pk)


class PeriodTests(TestCase):
    def test_job_inside_the_period_blocks(self):
        first = UniqueWorker.enqueue({"id": 1})  # period 60
        age(first, 50)
        self.assertTrue(UniqueWorker.enqueue({"id": 1}).conflict)
        self.assertEqual(Job.objects.count(), 1)

    def test_job_older_than_the_period_does_not_block(self):
        first = UniqueWorker.enqueue({"id": 1})
        age(first, 61)
        second = UniqueWorker.enqueue({"id": 1})
        self.assertFalse(second.conflict)
        self.assertNotEqual(second.pk, first.pk)
        self.assertEqual(Job.objects.count(), 2)
        # The new job now holds the slot: the next duplicate finds it, not the old one.
        third = UniqueWorker.enqueue({"id": 1})
        self.assertTrue(third.conflict)
        self.assertEqual(third.pk, second.pk)
        self.assertEqual(Job.objects.count(), 2)
        # The old job is untouched apart from giving up its slot.
        old = Job.objects.get(pk=first.pk)
        self.assertEqual((old.state, old.args), (JobState.AVAILABLE, {"id": 1}))
        self.assertIsNone(Job.objects.filter(pk=first.pk).values_list("unique_slot",
                                                                        flat=True).get())

    def test_period_forms(self):
        cases = [
            (30, 25, True), (30, 35, False),
            (2.5, 1, True), (2.5, 4, False),
            (datetime.timedelta(minutes=5), 240, True),
            (datetime.timedelta(minutes=5), 360, False),
            ((2, "hours"), 7000, True), ((2, "hours"), 7300, False),
            ("infinity", 10 * 365 * 86400, True),
            (None, 10 * 365 * 86400, True),
            (float("inf"), 10 * 365 * 86400, True),
        ]
        for n, (period, seconds_ago, blocks) in enumerate(cases):
            with self.subTest(period=period, seconds_ago=seconds_ago):
                unique = {"period": period}
                first = NoopWorker.enqueue({"n": n}, unique=unique)
                age(first, seconds_ago)
                second = NoopWorker.enqueue({"n": n}, unique=unique)
                self.assertEqual(second.conflict, blocks)
                self.assertEqual(second.pk == first.pk, blocks)
                self.assertEqual(Job.objects.filter(args={"n": n}).count(), 1 if blocks else 2)

    def test_default_period_is_sixty_seconds(self):
        self.assertEqual(parse_unique(True).period, 60)
        first = NoopWorker.enqueue({"a": 1}, unique=True)
        age(first, 59)
        self.assertTrue(NoopWorker.enqueue({"a": 1}, unique=True).conflict)
        age(first, 61)
        self.assertFalse(NoopWorker.enqueue({"a": 1}, unique=True).conflict)

    def test_timestamp_scheduled_at(self):
        # Measured on scheduled_at: a job scheduled long ago does not block ...
        first = ScheduledTimestampWorker.enqueue({"id": 1})
        age(first, 120, "scheduled_at")
        self.assertFalse(ScheduledTimestampWorker.enqueue({"id": 1}).conflict)
        # ... while for the default inserted_at timestamp the same move changes nothing.
        plain = UniqueWorker.enqueue({"id": 1})
        age(plain, 120, "scheduled_at")
        self.assertTrue(UniqueWorker.enqueue({"id": 1}).conflict)

    def test_timestamp_scheduled_at_future_job_blocks_even_if_inserted_long_ago(self):
        first = ScheduledTimestampWorker.enqueue({"id": 2}, schedule_in=3600)
        age(first, 3 * 86400, "inserted_at")
        again = ScheduledTimestampWorker.enqueue({"id": 2}, schedule_in=3600)
        self.assertTrue(again.conflict)
        self.assertEqual(again.pk, first.pk)
        # With the inserted_at timestamp the old insert time lets a new job in.
        old = UniqueWorker.enqueue({"id": 2}, schedule_in=3600)
        age(old, 3 * 86400, "inserted_at")
        self.assertFalse(UniqueWorker.enqueue({"id": 2}, schedule_in=3600).conflict)


class FieldsAndKeysTests(TestCase):
    def test_default_fields_are_args_queue_worker(self):
        self.assertEqual(UniqueSpec().fields, ("args", "queue", "worker"))
        a = UniqueWorker.enqueue({"id": 1})
        # Another queue: not a duplicate.
        self.assertFalse(UniqueWorker.enqueue({"id": 1}, queue="other").conflict)
        # Other meta: meta is not compared by default.
        dup = UniqueWorker.enqueue({"id": 1}, meta={"trace": "x"})
        self.assertTrue(dup.conflict)
        self.assertEqual(dup.pk, a.pk)
        # Other worker (same unique options): not a duplicate.
        self.assertFalse(NoopWorker.enqueue({"id": 1}, unique={"period": 60}).conflict)
        self.assertEqual(Job.objects.count(), 3)

    def test_fields_without_worker_collide_across_workers(self):
        a = ArgsOnlyUniqueA.enqueue({"id": 1})
        b = ArgsOnlyUniqueB.enqueue({"id": 1})
        self.assertTrue(b.conflict)
        self.assertEqual(b.pk, a.pk)
        self.assertEqual(b.worker, "tests.workers.ArgsOnlyUniqueA")
        self.assertFalse(ArgsOnlyUniqueB.enqueue({"id": 2}).conflict)

    def test_fields_worker_only(self):
        unique = {"fields": ["worker"], "period": 60}
        a = NoopWorker.enqueue({"id": 1}, unique=unique)
        b = NoopWorker.enqueue({"id": 2}, unique=unique, queue="elsewhere", meta={"m": 1})
        self.assertTrue(b.conflict)
        self.assertEqual(b.pk, a.pk)

    def test_fields_queue_only(self):
        unique = {"fields": ["queue"], "period": 60}
        a = NoopWorker.enqueue({"id": 1}, unique=unique, queue="singleton")
        b = ImmediateUniqueWorker.enqueue({"id": 2}, unique=unique, queue="singleton")
        self.assertTrue(b.conflict)
        self.assertEqual(b.pk, a.pk)
        self.assertFalse(NoopWorker.enqueue({"id": 1}, unique=unique, queue="other").conflict)

    def test_fields_with_meta(self):
        unique = {"fields": ["worker", "meta"], "period": 60}
        a = NoopWorker.enqueue({"id": 1}, unique=unique, meta={"tenant": 1})
        self.assertTrue(NoopWorker.enqueue({"id": 2}, unique=unique, meta={"tenant": 1}).conflict)
        b = NoopWorker.enqueue({"id": 1}, unique=unique, meta={"tenant": 2})
        self.assertFalse(b.conflict)
        self.assertNotEqual(a.pk, b.pk)

    def test_keys_limit_the_args_compared(self):
        a = UniqueByEmailWorker.enqueue({"email": "a@example.com", "name": "A"})
        b = UniqueByEmailWorker.enqueue({"email": "a@example.com", "name": "B", "extra": 1})
        self.assertTrue(b.conflict)
        self.assertEqual(b.pk, a.pk)
        c = UniqueByEmailWorker.enqueue({"email": "c@example.com", "name": "A"})
        self.assertFalse(c.conflict)
        self.assertEqual(Job.objects.count(), 2)

    def test_keys_apply_to_meta(self):
        unique = {"fields": ["worker", "meta"], "keys": ["tenant"], "period": 60}
        a = NoopWorker.enqueue({}, unique=unique, meta={"tenant": 7, "trace": "x"})
        b = NoopWorker.enqueue({}, unique=unique, meta={"tenant": 7, "trace": "y"})
        self.assertTrue(b.conflict)
        self.assertEqual(a.pk, b.pk)
        self.assertFalse(NoopWorker.enqueue({}, unique=unique, meta={"tenant": 8}).conflict)

    def test_missing_keys_compare_as_absent(self):
        unique = {"keys": ["email"], "period": 60}
        a = NoopWorker.enqueue({"other": 1}, unique=unique)
        b = NoopWorker.enqueue({"other": 2}, unique=unique)
        self.assertTrue(b.conflict)
        self.assertEqual(a.pk, b.pk)
        self.assertFalse(NoopWorker.enqueue({"email": None}, unique=unique).conflict)


class StatesTests(TestCase):
    def test_named_groups_are_obans(self):
        incomplete = {S.AVAILABLE, S.SCHEDULED, S.SUSPENDED, S.EXECUTING, S.RETRYABLE}
        self.assertEqual(STATE_GROUPS["all"], ALL_STATES)
        self.assertEqual(STATE_GROUPS["incomplete"], incomplete)
        self.assertEqual(STATE_GROUPS["scheduled"], {S.SCHEDULED})
        self.assertEqual(STATE_GROUPS["successful"], incomplete | {S.COMPLETED})
        self.assertEqual(set(STATE_GROUPS), {"all", "incomplete", "scheduled", "successful"})
        self.assertEqual(UniqueSpec().states, STATE_GROUPS["successful"])
        self.assertEqual(parse_unique({"states": "all"}).states, ALL_STATES)
        self.assertEqual(parse_unique({"states": ["completed", "available"]}).states,
                         {S.COMPLETED, S.AVAILABLE})

    def assertBlocks(self, states, existing_state, blocks, *, schedule_in=None, n):
        unique = {"period": "infinity", "states": states}
        options = {"schedule_in": schedule_in} if schedule_in else {}
        first = NoopWorker.enqueue({"n": n}, unique=unique, **options)
        if first.state != existing_state:
            set_state(first, existing_state)
        second = NoopWorker.enqueue({"n": n}, unique=unique, **options)
        self.assertEqual(second.conflict, blocks)
        self.assertEqual(second.pk == first.pk, blocks)
        self.assertEqual(Job.objects.filter(args={"n": n}).count(), 1 if blocks else 2)

    def test_every_group_and_state_scheduled_new_job(self):
        # The new job is itself scheduled, so it is in the states of every group.
        n = 0
        for group in ("all", "incomplete", "successful", "scheduled"):
            for state in JobState.values:
                n += 1
                with self.subTest(group=group, existing=state):
                    self.assertBlocks(group, state, state in STATE_GROUPS[group],
                                      schedule_in=3600, n=n)

    def test_every_group_and_state_immediate_new_job(self):
        n = 100
        for group in ("all", "incomplete", "successful"):
            for state in JobState.values:
                n += 1
                with self.subTest(group=group, existing=state):
                    self.assertBlocks(group, state, state in STATE_GROUPS[group], n=n)

    def test_scheduled_group_existing_scheduled_job_blocks_an_immediate_insert(self):
        # Oban: with states [:scheduled], a job waiting in `scheduled` is a duplicate of any
        # new job with the same key, whether the new one is scheduled or not.
        unique = {"period": "infinity", "states": "scheduled"}
        first = NoopWorker.enqueue({"id": 1}, unique=unique, schedule_in=3600)
        self.assertEqual(first.state, JobState.SCHEDULED)
        second = NoopWorker.enqueue({"id": 1}, unique=unique)
        self.assertTrue(second.conflict)
        self.assertEqual(second.pk, first.pk)
        self.assertEqual(Job.objects.count(), 1)

    def test_states_without_a_starting_state_are_refused(self):
        # A job holds its slot from insert while it stays in its states, so a list that a new
        # job can never start in (available or scheduled) would enforce nothing: refuse it.
        for states in (["completed"], ["executing", "retryable"], ["discarded", "cancelled"]):
            with self.subTest(states=states), self.assertRaises(InvalidJobError) as ctx:
                NoopWorker.new({"id": 1}, unique={"states": states})
            self.assertIn("must include 'available' or 'scheduled'", str(ctx.exception))
        self.assertEqual(Job.objects.count(), 0)

    def test_scheduled_group_available_job_does_not_block(self):
        unique = {"period": "infinity", "states": "scheduled"}
        NoopWorker.enqueue({"id": 1}, unique=unique)
        self.assertFalse(NoopWorker.enqueue({"id": 1}, unique=unique).conflict)
        self.assertFalse(NoopWorker.enqueue({"id": 1}, unique=unique,
                                            schedule_in=60).conflict)

    def test_explicit_state_list(self):
        n = 200
        states = ["scheduled", "available", "discarded"]
        for state in JobState.values:
            n += 1
            with self.subTest(existing=state):
                self.assertBlocks(states, state, state in states, schedule_in=60, n=n)

    def test_completed_job_blocks_under_successful_not_incomplete(self):
        first = NoopWorker.enqueue({"id": 1}, unique={"period": "infinity", "states": "all"})
        set_state(first, JobState.COMPLETED)
        under_successful = NoopWorker.enqueue(
            {"id": 1}, unique={"period": "infinity", "states": "successful"})
        self.assertTrue(under_successful.conflict)
        self.assertEqual(under_successful.pk, first.pk)
        self.assertEqual(under_successful.state, JobState.COMPLETED)
        under_incomplete = NoopWorker.enqueue(
            {"id": 1}, unique={"period": "infinity", "states": "incomplete"})
        self.assertFalse(under_incomplete.conflict)
        self.assertNotEqual(under_incomplete.pk, first.pk)
        self.assertEqual(Job.objects.count(), 2)

    def test_completed_job_of_an_incomplete_worker_does_not_block(self):
        first = UniqueByEmailWorker.enqueue({"email": "a@example.com"})  # states incomplete
        set_state(first, JobState.COMPLETED)
        again = UniqueByEmailWorker.enqueue({"email": "a@example.com"})
        self.assertFalse(again.conflict)
        self.assertEqual(Job.objects.count(), 2)

    def test_job_leaving_its_unique_states_frees_the_slot(self):
        first = UniqueWorker.enqueue({"id": 1})  # successful
        slot = Job.objects.filter(pk=first.pk).values_list("unique_slot", flat=True).get()
        self.assertEqual(slot, first.unique_key)
        set_state(first, JobState.CANCELLED)
        self.assertIsNone(
            Job.objects.filter(pk=first.pk).values_list("unique_slot", flat=True).get())
        second = UniqueWorker.enqueue({"id": 1})
        self.assertFalse(second.conflict)
        self.assertEqual(Job.objects.count(), 2)
        self.assertTrue(UniqueWorker.enqueue({"id": 1}).conflict)

    def test_discarded_job_blocks_under_all(self):
        first = NoopWorker.enqueue({"id": 1}, unique={"states": "all", "period": 60})
        set_state(first, JobState.DISCARDED)
        self.assertTrue(NoopWorker.enqueue({"id": 1}, unique={"states": "all",
                                                              "period": 60}).conflict)


class ReplaceTests(TestCase):
    def test_replace_scheduled_fields_of_a_scheduled_job(self):
        # UniqueByEmailWorker: replace {"scheduled": [scheduled_at, args], "available": [priority]}
        first = UniqueByEmailWorker.enqueue({"email": "a@example.com", "name": "old"},
                                            schedule_in=60, priority=1)
        later = timezone.now() + datetime.timedelta(hours=2)
        second = UniqueByEmailWorker.enqueue({"email": "a@example.com", "name": "new"},
                                             scheduled_at=later, priority=9)
        self.assertTrue(second.conflict)
        self.assertEqual(second.pk, first.pk)
        self.assertEqual(second.scheduled_at, later)
        self.assertEqual(second.args, {"email": "a@example.com", "name": "new"})
        self.assertEqual(second.priority, 1)  # not listed for scheduled jobs
        row = Job.objects.get(pk=first.pk)
        self.assertEqual(row.scheduled_at, later)
        self.assertEqual(row.args, {"email": "a@example.com", "name": "new"})
        self.assertEqual(row.priority, 1)
        self.assertEqual(row.state, JobState.SCHEDULED)
        self.assertEqual(Job.objects.count(), 1)

    def test_replace_available_fields_of_an_available_job(self):
        first = UniqueByEmailWorker.enqueue({"email": "b@example.com", "name": "old"})
        second = UniqueByEmailWorker.enqueue({"email": "b@example.com", "name": "new"},
                                             priority=6)
        self.assertTrue(second.conflict)
        row = Job.objects.get(pk=first.pk)
        self.assertEqual(row.priority, 6)
        self.assertEqual(second.priority, 6)
        self.assertEqual(row.args, {"email": "b@example.com", "name": "old"})
        self.assertEqual(row.scheduled_at, Job.objects.get(pk=first.pk).scheduled_at)

    def test_no_replace_for_an_unlisted_state(self):
        first = UniqueByEmailWorker.enqueue({"email": "c@example.com", "name": "old"},
                                            priority=2)
        set_state(first, JobState.EXECUTING)
        second = UniqueByEmailWorker.enqueue({"email": "c@example.com", "name": "new"},
                                             priority=8)
        self.assertTrue(second.conflict)
        row = Job.objects.get(pk=first.pk)
        self.assertEqual((row.priority, row.args["name"], row.state),
                         (2, "old", JobState.EXECUTING))

    def test_replace_as_a_list_applies_in_every_state(self):
        for n, state in enumerate(JobState.values):
            with self.subTest(state=state):
                first = ReplaceAnyStateWorker.enqueue({"id": n, "v": 1}, tags=["a"],
                                                      max_attempts=3, unique={
                                                          "period": "infinity",
                                                          "fields": ["worker", "args"],
                                                          "keys": ["id"], "states": "all"})
                set_state(first, state)
                second = ReplaceAnyStateWorker.enqueue(
                    {"id": n, "v": 2}, tags=["b", "c"], max_attempts=7, queue="moved",
                    priority=5, unique={"period": "infinity", "fields": ["worker", "args"],
                                        "keys": ["id"], "states": "all"})
                self.assertTrue(second.conflict)
                row = Job.objects.get(pk=first.pk)
                self.assertEqual(row.args, {"id": n, "v": 2})
                self.assertEqual(row.tags, ["b", "c"])
                self.assertEqual(row.max_attempts, 7)
                self.assertEqual(row.queue, "moved")
                self.assertEqual(row.priority, 0)  # not in replace
                self.assertEqual(row.state, state)

    def test_replace_per_job_option(self):
        first = NoopWorker.enqueue({"id": 1}, unique=True, meta={"v": 1})
        second = NoopWorker.enqueue({"id": 1}, unique=True, meta={"v": 2},
                                    replace=["meta", "tags"], tags=["t"])
        self.assertTrue(second.conflict)
        row = Job.objects.get(pk=first.pk)
        self.assertEqual((row.meta, row.tags), ({"v": 2}, ["t"]))

    def test_replace_without_conflict_changes_nothing(self):
        job = UniqueByEmailWorker.enqueue({"email": "d@example.com"}, priority=4)
        self.assertFalse(job.conflict)
        self.assertEqual(Job.objects.get(pk=job.pk).priority, 4)

    def test_replace_must_name_replaceable_fields(self):
        for fields in (["state"], ["attempt"], ["id"], ["inserted_at"], ["errors"]):
            with self.subTest(fields=fields), self.assertRaises(InvalidJobError):
                NoopWorker.new({}, unique=True, replace=fields)


class InsertAllUniqueTests(TestCase):
    def test_duplicates_inside_one_call(self):
        jobs = [UniqueWorker.new({"id": 1}), UniqueWorker.new({"id": 2}),
                UniqueWorker.new({"id": 1}), NoopWorker.new({"id": 1}),
                UniqueWorker.new({"id": 1})]
        result = django_jobs.insert_all(jobs)
        self.assertEqual(len(result), 5)
        self.assertEqual(Job.objects.count(), 3)
        self.assertEqual([job.conflict for job in result], [False, False, True, False, True])
        self.assertEqual(result[2].pk, result[0].pk)
        self.assertEqual(result[4].pk, result[0].pk)
        self.assertEqual(len({result[0].pk, result[1].pk, result[3].pk}), 3)
        self.assertEqual([job.args for job in result],
                         [{"id": 1}, {"id": 2}, {"id": 1}, {"id": 1}, {"id": 1}])
        self.assertEqual(result[3].worker, "tests.workers.NoopWorker")
        self.assertIs(result[0], jobs[0])
        self.assertIs(result[3], jobs[3])

    def test_duplicates_against_existing_rows(self):
        existing = UniqueWorker.enqueue({"id": 1})
        result = django_jobs.insert_all([UniqueWorker.new({"id": 0}),
                                         UniqueWorker.new({"id": 1}),
                                         UniqueWorker.new({"id": 2})])
        self.assertEqual([job.conflict for job in result], [False, True, False])
        self.assertEqual(result[1].pk, existing.pk)
        self.assertEqual(Job.objects.count(), 3)
        self.assertEqual(sorted(Job.objects.values_list("args__id", flat=True)), [0, 1, 2])

    def test_many_duplicates_in_bulk(self):
        existing = [UniqueWorker.enqueue({"id": i}) for i in range(0, 300, 3)]
        by_id = {job.args["id"]: job.pk for job in existing}
        jobs = [UniqueWorker.new({"id": i % 300}) for i in range(900)]
        result = django_jobs.insert_all(jobs)
        self.assertEqual(Job.objects.count(), 300)
        seen = {}
        for i, job in enumerate(result):
            key = i % 300
            self.assertEqual(job.args, {"id": key})
            if key in by_id:
                self.assertTrue(job.conflict)
                self.assertEqual(job.pk, by_id[key])
            elif key in seen:
                self.assertTrue(job.conflict)
                self.assertEqual(job.pk, seen[key])
            else:
                self.assertFalse(job.conflict)
                seen[key] = job.pk
        self.assertEqual(len(seen), 200)

    def test_replace_inside_one_call(self):
        result = django_jobs.insert_all([
            UniqueByEmailWorker.new({"email": "a@example.com", "n": 1}, schedule_in=60),
            UniqueByEmailWorker.new({"email": "a@example.com", "n": 2}, schedule_in=120),
        ])
        self.assertTrue(result[1].conflict)
        self.assertEqual(result[1].pk, result[0].pk)
        row = Job.objects.get()
        self.assertEqual(row.args["n"], 2)
        self.assertAlmostEqual((row.scheduled_at - row.inserted_at).total_seconds(), 120,
                               delta=1)

    def test_expired_holder_inside_one_call_is_replaced_by_the_new_job(self):
        old = UniqueWorker.enqueue({"id": 1})
        age(old, 3600)
        result = django_jobs.insert_all([UniqueWorker.new({"id": 1}),
                                         UniqueWorker.new({"id": 1})])
        self.assertFalse(result[0].conflict)
        self.assertTrue(result[1].conflict)
        self.assertEqual(result[1].pk, result[0].pk)
        self.assertNotEqual(result[0].pk, old.pk)
        self.assertEqual(Job.objects.count(), 2)

    def test_unique_insert_all_in_a_rolled_back_transaction_leaves_nothing(self):
        from django.db import transaction

        with self.assertRaises(RuntimeError), transaction.atomic():
            django_jobs.insert_all([UniqueWorker.new({"id": i % 5}) for i in range(20)])
            raise RuntimeError
        self.assertEqual(Job.objects.count(), 0)
        self.assertEqual(len(django_jobs.insert_all(
            [UniqueWorker.new({"id": i % 5}) for i in range(20)])), 20)
        self.assertEqual(Job.objects.count(), 5)
