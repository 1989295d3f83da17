"""``insert_jobs``: rows written as the jobs hold them, ids given back in insertion order,
statements chunked by ``max_query_params``, taken unique slots skipped on request."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.test import TestCase

from ..models import Job
from .support import EngineMixin, build, count_statements, later, reload

class InsertTests(EngineMixin, TestCase):
    def assertRowsAre(self, jobs):
        """Each job's row holds what the job held (ids matched to the right jobs)."""
        rows = Job.objects.in_bulk([job.pk for job in jobs])
        self.assertEqual(len(rows), len(jobs))
        for job in jobs:
            row = rows[job.pk]
            for field in self.engine.insert_fields:
                self.assertEqual(getattr(row, field.attname), getattr(job, field.attname),
                                 f"job {job.pk}: {field.attname}")

    def test_one_job(self):
        [job] = build(meta={"m": 1}, tags=["t"], priority=3)
        self.engine.insert_jobs([job])
        self.assertIsNotNone(job.pk)
        self.assertFalse(job._state.adding)
        self.assertEqual(job._state.db, self.engine.alias)
        self.assertRowsAre([job])
        row = reload(job)
        self.assertEqual((row.state, row.attempt, row.errors), ("available", 0, []))
        self.assertIsNone(row.attempted_by)

    def test_nothing_to_insert(self):
        with count_statements() as statements:
            self.engine.insert_jobs([])
            self.engine.insert_jobs([], skip_conflicts=True)
        self.assertEqual(statements, [])

    def test_many_jobs_past_one_statement(self):
        per_statement = self.engine.max_query_params // len(self.engine.insert_fields)
        jobs = build(per_statement + 2)
        jobs[1].state, jobs[1].scheduled_at = "scheduled", later(60)
        self.engine.insert_jobs(jobs)
        ids = [job.pk for job in jobs]
        self.assertNotIn(None, ids)
        self.assertEqual(ids, sorted(ids), "ids are not in insertion order")
        self.assertEqual(len(set(ids)), len(ids))
        self.assertTrue(all(not job._state.adding for job in jobs))
        self.assertEqual(Job.objects.count(), len(jobs))
        # Each id is its own job's row (spot checks plus both ends of every chunk).
        self.assertRowsAre([jobs[i] for i in {0, 1, 2, per_statement - 1, per_statement,
                                              per_statement + 1}])
        self.assertEqual(dict(Job.objects.values_list("pk", "args__n")),
                         {job.pk: job.args["n"] for job in jobs})

    def test_skip_conflicts_skips_taken_slots(self):
        [holder] = build(unique={"period": "infinity"}, start=100)
        self.engine.insert_jobs([holder], skip_conflicts=True)
        self.assertIsNotNone(holder.pk)
        [dup_of_holder] = build(unique={"period": "infinity"}, start=100)
        first, second = build(2, unique={"period": "infinity"})
        [dup_of_first] = build(unique={"period": "infinity"})
        plain = build(start=7)[0]
        batch = [dup_of_holder, first, dup_of_first, plain, second]
        self.engine.insert_jobs(batch, skip_conflicts=True)
        self.assertIsNone(dup_of_holder.pk)
        self.assertIsNone(dup_of_first.pk)
        self.assertTrue(dup_of_first._state.adding)
        self.assertEqual(len({first.pk, second.pk, plain.pk} - {None}), 3)
        self.assertRowsAre([holder, first, second, plain])
        self.assertEqual(Job.objects.count(), 4)
        self.assertEqual(reload(first).unique_slot, first.unique_key)

    def test_skip_conflicts_past_one_statement(self):
        per_statement = self.engine.max_query_params // len(self.engine.insert_fields)
        [holder] = build(unique={"period": "infinity"}, start=5)
        self.engine.insert_jobs([holder])
        jobs = build(per_statement + 2, unique={"period": "infinity"})
        self.engine.insert_jobs(jobs, skip_conflicts=True)
        skipped = [job for job in jobs if job.pk is None]
        self.assertEqual([job.args for job in skipped], [{"n": 5}])
        inserted = [job for job in jobs if job.pk is not None]
        self.assertEqual(len(inserted), per_statement + 1)
        self.assertEqual(Job.objects.count(), per_statement + 2)
        self.assertEqual(dict(Job.objects.values_list("pk", "unique_key")),
                         {job.pk: job.unique_key for job in [holder, *inserted]})
        self.assertRowsAre([inserted[0], inserted[per_statement - 1], inserted[-1]])

    def test_a_taken_slot_without_skip_conflicts_is_an_error(self):
        [holder] = build(unique={"period": "infinity"})
        self.engine.insert_jobs([holder])
        with self.assertRaises(IntegrityError), transaction.atomic():
            self.engine.insert_jobs(build(unique={"period": "infinity"}))
        self.assertEqual(Job.objects.count(), 1)
