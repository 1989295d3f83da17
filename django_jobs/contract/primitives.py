"""The door's primitives, called as the door calls them: ``lock_jobs`` reads (and, where the
database has row locks, locks) the jobs still in ``only_from``; ``update_jobs``,
``update_each`` and ``delete_jobs`` touch only those and return ``(id, queue)`` of each job
they changed. (:mod:`django_jobs.contract.door` checks the door's behaviour over them.)"""

from __future__ import annotations

from django.db import DatabaseError, transaction
from django.db.models import F
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from ..models import Job, error_entry
from ..transitions import state_columns
from .support import (QUEUE, EngineMixin, ago, claim, enqueue, fresh, later, put, reload,
                      row_values, states)
from .waits import in_thread, join_all


class LockJobsTests(EngineMixin, TestCase):
    def test_reads_the_jobs_still_in_only_from_in_id_order(self):
        jobs = enqueue(3, meta={"m": 1})
        put(jobs[1:2], "completed", completed_at=ago(1))
        [running] = claim(queue="running")
        target = Job.objects.filter(pk__in=[j.pk for j in [*jobs, running]]).order_by("-id")
        with transaction.atomic():
            rows = self.engine.lock_jobs(target, ["available", "executing"])
        self.assertEqual(rows, [
            (jobs[0].pk, jobs[0].worker, QUEUE, {"m": 1}, "available", 0),
            (jobs[2].pk, jobs[2].worker, QUEUE, {"m": 1}, "available", 0),
            (running.pk, running.worker, "running", {}, "executing", 1)])
        with transaction.atomic():
            self.assertEqual(self.engine.lock_jobs(target, ["retryable"]), [])
        self.assertEqual(states([*jobs, running]),
                         ["available", "completed", "available", "executing"])


class LockJobsLockTests(EngineMixin, TransactionTestCase):
    def test_the_rows_stay_locked_until_the_transaction_ends(self):
        if not self.engine.connection.features.has_select_for_update_nowait:
            self.skipTest(f"{self.engine.vendor} has no row locks (one writer): lock_jobs "
                          f"only reads")
        locked, free = enqueue(2)
        seen = []

        def try_to_lock(job):
            """Whether another connection can lock ``job`` at once."""
            def attempt():
                try:
                    with transaction.atomic():
                        list(Job.objects.select_for_update(nowait=True).filter(pk=job.pk))
                    seen.append((job.pk, "free"))
                except DatabaseError:
                    seen.append((job.pk, "locked"))

            join_all([in_thread(attempt, name="other-locker")], what="another connection's lock")

        with transaction.atomic():
            self.engine.lock_jobs(Job.objects.filter(pk=locked.pk), ["available"])
            try_to_lock(locked)
            try_to_lock(free)
        try_to_lock(locked)
        self.assertEqual(seen, [(locked.pk, "locked"), (free.pk, "free"), (locked.pk, "free")])


class UpdateJobsTests(EngineMixin, TestCase):
    def test_sets_values_and_expressions_on_the_jobs_still_in_only_from(self):
        mine = enqueue(2, priority=1)
        [other] = enqueue(queue="other", start=9)
        [done] = put(enqueue(start=5), "completed", completed_at=ago(1))
        changed = self.engine.update_jobs(Job.objects.order_by("-id"), ["available"], {
            "priority": F("priority") + 2, "meta": {"x": 1}, "tags": ["t"]})
        self.assertEqual(sorted(changed), [(mine[0].pk, QUEUE), (mine[1].pk, QUEUE),
                                           (other.pk, "other")])
        for row in fresh([*mine, other]):
            self.assertEqual((row.state, row.priority, row.meta, row.tags),
                             ("available", 3 if row.queue == QUEUE else 2, {"x": 1}, ["t"]))
        self.assertEqual(row_values(reload(done)), row_values(done))

    def test_a_target_of_no_job_changes_nothing(self):
        jobs = enqueue(2)
        before = [row_values(row) for row in fresh(jobs)]
        nothing = Job.objects.filter(pk__in=[])
        self.assertEqual(self.engine.update_jobs(nothing, ["available"], {"priority": 3}), [])
        self.assertEqual(self.engine.update_jobs(Job.objects.all(), ["retryable"],
                                                 {"priority": 3}), [])
        self.assertEqual(self.engine.delete_jobs(nothing, ["available"]), [])
        self.assertEqual([row_values(row) for row in fresh(jobs)], before)


class DeleteJobsTests(EngineMixin, TestCase):
    def test_deletes_the_jobs_still_in_only_from(self):
        jobs = put(enqueue(2), "completed", completed_at=ago(1))
        [other] = put(enqueue(queue="other", start=9), "cancelled", cancelled_at=ago(1))
        [running] = claim(queue="running")
        deleted = self.engine.delete_jobs(Job.objects.order_by("-id"), ["completed", "cancelled"])
        self.assertEqual(sorted(deleted), [(jobs[0].pk, QUEUE), (jobs[1].pk, QUEUE),
                                           (other.pk, "other")])
        self.assertEqual(states([*jobs, other, running]), [None, None, None, "executing"])


class UpdateEachTests(EngineMixin, TestCase):
    """``update_each`` as the door calls it: ``columns`` are the caller's shared values plus
    :func:`~django_jobs.transitions.state_columns` (the state, ``unique_key``, the finished
    timestamps)."""

    def update_each(self, jobs, state, only_from, values, each):
        columns = {**values, **state_columns(state, values, each)}
        return self.engine.update_each([job.pk for job in jobs], state, only_from, columns, each)

    def test_each_jobs_values_and_none_keeps_what_cannot_be_null(self):
        old = [error_entry(0, ago(60), "old")]
        jobs = put(claim(3, meta={"m": 0}), "executing", errors=old)
        [cancelled] = put(jobs[2:], "cancelled", cancelled_at=ago(1))
        at = timezone.now()
        each = {
            jobs[0].pk: {"errors": [error_entry(1, at, "a")], "scheduled_at": later(5, at),
                         "attempted_at": None, "meta": {"r": 1}},
            jobs[1].pk: {"errors": None, "scheduled_at": None, "attempted_at": ago(9, at),
                         "meta": None},
            jobs[2].pk: {"errors": [], "scheduled_at": at, "attempted_at": at, "meta": {}},
        }
        changed = self.update_each(jobs, "retryable", ["executing"], {"priority": 3}, each)
        self.assertEqual(sorted(changed), [(jobs[0].pk, QUEUE), (jobs[1].pk, QUEUE)])
        first, second = fresh(jobs[:2])
        self.assertEqual((first.state, first.errors, first.scheduled_at, first.attempted_at,
                          first.meta, first.priority),
                         ("retryable", each[jobs[0].pk]["errors"], later(5, at), None,
                          {"r": 1}, 3))
        # None in a column that cannot be NULL keeps the job's value; in one that can, sets
        # NULL.
        self.assertEqual((second.state, second.errors, second.scheduled_at,
                          second.attempted_at, second.meta, second.priority),
                         ("retryable", old, jobs[1].scheduled_at, ago(9, at), {"m": 0}, 3))
        self.assertEqual(row_values(reload(cancelled)), row_values(cancelled))

    def test_shared_expressions_with_each_jobs_values(self):
        jobs = claim(2, priority=1)
        changed = self.update_each(jobs, "completed", ["executing"],
                                   {"priority": F("priority") + 1},
                                   {job.pk: {"meta": {"i": i}} for i, job in enumerate(jobs)})
        self.assertEqual(sorted(changed), [(job.pk, QUEUE) for job in jobs])
        for i, row in enumerate(fresh(jobs)):
            self.assertEqual((row.state, row.priority, row.meta), ("completed", 2, {"i": i}))
            self.assertIsNotNone(row.completed_at)
            self.assertEqual(row.finished_at, row.completed_at)
