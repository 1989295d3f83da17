"""The decisions of the leader's plugins, on the database of the run: which jobs the stager
makes available (``stage_jobs``), which finished jobs the pruner deletes (``prune_jobs`` and its
retention rules, each a bounded query through the prune index), which executing jobs the
lifeline rescues or discards (``rescue_orphans``). Each writes through the door, so the
``state_changed`` signal reports what they change.

The stage, prune and rescue tests were the engine contract's (``Engine.stage_jobs`` and so on)
before the decisions moved into the plugins; their assertions are kept as they were.
"""

from __future__ import annotations

import datetime
import math
import uuid

from django.db import connection, transaction
from django.test import TestCase
from django.utils import timezone

from django_jobs.contract.support import (FINAL, NOT_FINAL, QUEUE, ago, enqueue, later, put,
                                          row_values, states)
from django_jobs.contract.watching import receive_changes
from django_jobs.models import FINISHED_AT, Job, JobChange, Producer, error_entry
from django_jobs.plugins.lifeline import rescue_orphans
from django_jobs.plugins.pruner import Retention, prunable, prune_jobs, prune_statement
from django_jobs.plugins.stager import stage_jobs

from . import runtime_workers as w
from .helpers import producer_row, reload, set_state


def prune(now, limit, max_age) -> int:
    """How many jobs one pass deletes with the default retention ``max_age`` alone."""
    return len(prune_jobs(now, limit, Retention(max_age)))


# == moved from the engine contract ==============================================================


class StageTests(TestCase):
    def test_stages_due_scheduled_and_retryable_jobs(self):
        now = timezone.now()
        [due] = put(enqueue(queue="a"), "scheduled", scheduled_at=ago(5, now))
        [retry] = put(enqueue(queue="b", unique={"period": "infinity"}), "retryable",
                      scheduled_at=ago(1, now), attempt=1,
                      errors=[error_entry(1, now, "x")])
        [at_now] = put(enqueue(queue="a", start=1), "scheduled", scheduled_at=now)
        [future] = put(enqueue(queue="c"), "scheduled", scheduled_at=later(5, now))
        [future_retry] = put(enqueue(queue="c", start=1), "retryable", attempt=1,
                             scheduled_at=later(5, now))
        others = [put(enqueue(queue="d", start=i), state, scheduled_at=ago(50, now))[0]
                  for i, state in enumerate(["cancelled", "suspended", "completed",
                                             "discarded", "executing"])]
        self.assertEqual(stage_jobs(now, 100), ["a", "b"])
        self.assertEqual(states([due, retry, at_now, future, future_retry, *others]),
                         ["available", "available", "available", "scheduled", "retryable",
                          "cancelled", "suspended", "completed", "discarded", "executing"])
        row = reload(retry)
        self.assertEqual((row.attempt, row.errors, row.unique_key),
                         (1, retry.errors, retry.unique_key))
        self.assertEqual(stage_jobs(now, 100), [])

    def test_limit_takes_the_earliest(self):
        now = timezone.now()
        jobs = [put(enqueue(queue=f"q{i}"), "scheduled", scheduled_at=ago(10 - i, now))[0]
                for i in range(5)]
        self.assertEqual(stage_jobs(now, 2), ["q0", "q1"])
        self.assertEqual(states(jobs), ["available"] * 2 + ["scheduled"] * 3)


class PruneTests(TestCase):
    def test_deletes_only_finished_jobs_older_than_before(self):
        now = timezone.now()
        for i, state in enumerate(FINAL):
            put(enqueue(start=i), state, **{FINISHED_AT[state]: ago(100, now)})
        young = [put(enqueue(start=10 + i), state, **{FINISHED_AT[state]: ago(10, now)})[0]
                 for i, state in enumerate(FINAL)]
        [boundary] = put(enqueue(start=20), "completed", completed_at=ago(50, now))
        unfinished = [put(enqueue(start=30 + i), state, scheduled_at=ago(999, now),
                          inserted_at=ago(999, now))[0]
                      for i, state in enumerate(NOT_FINAL)]
        self.assertEqual(prune(now, 100, 50), 3)
        self.assertEqual(set(Job.objects.values_list("pk", flat=True)),
                         {j.pk for j in [*young, boundary, *unfinished]})
        self.assertEqual(prune(now, 100, 50), 0)

    def test_oldest_first_bounded_by_limit(self):
        now = timezone.now()
        # Inserted newest first, so the oldest are not the lowest ids.
        jobs = [put(enqueue(start=i), FINAL[i % 3],
                    **{FINISHED_AT[FINAL[i % 3]]: ago(100 + i, now)})[0] for i in range(5)]
        self.assertEqual(prune(now, 2, 10), 2)
        self.assertEqual(states(jobs), ["completed", "cancelled", "discarded", None, None])
        self.assertEqual([prune(now, 2, 10) for _ in range(3)],
                         [2, 1, 0])
        self.assertEqual(Job.objects.count(), 0)


class RescueTests(TestCase):
    def test_rescues_jobs_of_producers_without_a_fresh_heartbeat(self):
        now = timezone.now()
        live = producer_row("live-node", QUEUE, limit=5, heartbeat_at=ago(1, now))
        stale = producer_row("dead-node", QUEUE, limit=5, heartbeat_at=ago(120, now))
        [on_live] = put(enqueue(start=1), "executing", attempt=1, attempted_at=ago(3600, now),
                        attempted_by=["live-node", str(live.uuid)])
        [on_stale] = put(enqueue(start=2), "executing", attempt=1,
                         attempted_by=["dead-node", str(stale.uuid)])
        [on_missing] = put(enqueue(queue="other", start=3, max_attempts=5), "executing",
                           attempt=2, attempted_by=["gone", str(uuid.uuid4())],
                           errors=[error_entry(1, ago(60, now), "earlier")])
        [exhausted] = put(enqueue(queue="third", max_attempts=3), "executing", attempt=3,
                          attempted_by=["gone", str(uuid.uuid4())])
        [no_owner] = put(enqueue(start=4), "executing", attempt=1, attempted_by=None)
        [idle] = put(enqueue(start=5), "retryable", attempt=1,
                     attempted_by=["gone", str(uuid.uuid4())])
        result = rescue_orphans(ago(60, now), now)
        self.assertEqual(result, {"rescued": 3, "discarded": 1, "queues": [QUEUE, "other"],
                                  "producers_removed": 1})
        self.assertEqual(list(Producer.objects.values_list("uuid", flat=True)), [live.uuid])
        self.assertEqual(row_values(reload(on_live)), row_values(on_live))
        self.assertEqual(row_values(reload(idle)), row_values(idle))
        for job in (on_stale, on_missing, no_owner):
            row = reload(job)
            self.assertEqual((row.state, row.attempt), ("available", job.attempt))
            self.assertEqual(row.errors[:-1], job.errors)
            self.assertEqual(row.errors[-1]["attempt"], job.attempt)
            self.assertEqual(row.errors[-1]["at"], now.isoformat())
            self.assertIn("Rescued", row.errors[-1]["error"])
        row = reload(exhausted)
        self.assertEqual((row.state, row.discarded_at), ("discarded", now))
        self.assertIn("Rescued", row.errors[-1]["error"])
        self.assertEqual(rescue_orphans(ago(60, now), now),
                         {"rescued": 0, "discarded": 0, "queues": [], "producers_removed": 0})

    def test_rescue_reports_the_changes(self):
        now = timezone.now()
        [orphan] = put(enqueue(meta={"m": 1}), "executing", attempt=1,
                       attempted_by=["gone", str(uuid.uuid4())])
        calls = receive_changes(self)
        rescue_orphans(ago(60, now), now)
        self.assertEqual([c for call in calls for c in call.changes],
                         [JobChange(orphan.pk, orphan.worker, QUEUE, {"m": 1}, "executing",
                                    "available")])




# == moved from test_runtime_plugins: the same decisions through fixture workers ===============


def make(state, queue="plug", worker=w.ReturnWorker, **changes):
    """A job of ``worker`` put in ``state`` with ``changes``."""
    return set_state(worker.enqueue({"made": state}, queue=queue), state, **changes)


class StagerDecisionTests(TestCase):
    def test_stage_moves_due_scheduled_and_retryable_jobs(self):
        now = timezone.now()
        due_scheduled = make("scheduled", queue="a", scheduled_at=ago(5, now))
        due_retryable = make("retryable", queue="b", scheduled_at=ago(1, now), attempt=1)
        at_now = make("scheduled", queue="a", scheduled_at=now)
        future = make("scheduled", queue="c", scheduled_at=now + datetime.timedelta(seconds=5))
        future_retry = make("retryable", queue="c", attempt=1,
                            scheduled_at=now + datetime.timedelta(seconds=5))
        old_completed = make("completed", queue="d", scheduled_at=ago(50, now),
                             completed_at=ago(40, now))
        self.assertEqual(stage_jobs(now, 100), ["a", "b"])
        for job in (due_scheduled, due_retryable, at_now):
            self.assertEqual(reload(job).state, "available")
        self.assertEqual(reload(due_retryable).attempt, 1)
        self.assertEqual(reload(future).state, "scheduled")
        self.assertEqual(reload(future_retry).state, "retryable")
        self.assertEqual(reload(old_completed).state, "completed")
        self.assertEqual(stage_jobs(now, 100), [])

    def test_stage_limit_takes_the_earliest(self):
        now = timezone.now()
        jobs = [make("scheduled", queue=f"q{i}", scheduled_at=ago(10 - i, now))
                for i in range(5)]
        self.assertEqual(stage_jobs(now, 2), ["q0", "q1"])
        self.assertEqual([reload(j).state for j in jobs],
                         ["available", "available", "scheduled", "scheduled", "scheduled"])

    def test_staging_wakes_the_queues_after_commit(self):
        from django_jobs.engines import wakeup

        woken = []
        wakeup.register("a", lambda: woken.append("a"))
        self.addCleanup(wakeup.unregister, "a", woken.append)
        make("scheduled", queue="a", scheduled_at=ago(5))
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(stage_jobs(timezone.now(), 10), ["a"])
            self.assertEqual(woken, [])
        self.assertEqual(woken, ["a"])


class PrunerDecisionTests(TestCase):
    def test_prune_deletes_only_old_finished_jobs(self):
        now = timezone.now()
        day = 86400
        old = [make("completed", completed_at=ago(2 * day, now)),
               make("cancelled", cancelled_at=ago(2 * day, now)),
               make("discarded", discarded_at=ago(2 * day, now))]
        young = [make("completed", completed_at=ago(day / 2, now)),
                 make("cancelled", cancelled_at=ago(60, now)),
                 make("discarded", discarded_at=ago(1, now))]
        unfinished = [make(state, inserted_at=ago(9 * day, now), scheduled_at=ago(9 * day, now))
                      for state in ("available", "scheduled", "retryable")]
        unfinished.append(make("executing", attempt=1, attempted_at=ago(9 * day, now)))
        deleted = prune_jobs(now, 100, Retention(day))
        self.assertEqual(sorted(deleted), sorted(j.pk for j in old))
        remaining = set(Job.objects.values_list("pk", flat=True))
        self.assertFalse(remaining & {j.pk for j in old})
        self.assertEqual(remaining, {j.pk for j in young + unfinished})

    def test_prune_works_in_chunks_of_limit(self):
        now = timezone.now()
        for i in range(5):
            make("completed", completed_at=ago(100 + i, now))
        self.assertEqual([prune(now, 2, 50) for _ in range(4)], [2, 2, 1, 0])
        self.assertEqual(Job.objects.count(), 0)

    def test_prune_takes_the_oldest_first(self):
        now = timezone.now()
        jobs = [make("completed", completed_at=ago(1000 - i * 100, now)) for i in range(4)]
        self.assertEqual(prune_jobs(now, 2, Retention(10)), [jobs[0].pk, jobs[1].pk])
        self.assertEqual(set(Job.objects.values_list("pk", flat=True)),
                         {jobs[2].pk, jobs[3].pk})


# == retention per state, queue and worker =======================================================

HOUR, DAY = 3600, 86400


class RetentionTests(TestCase):
    """Which age judges a job: its worker's, else its state's, else its queue's, else
    ``max_age``; None (math.inf) keeps the jobs it names for ever."""

    def finished(self, state, age, *, queue="plug", worker=w.ReturnWorker, now):
        return make(state, queue=queue, worker=worker, **{FINISHED_AT[state]: ago(age, now)})

    def test_each_job_is_judged_by_its_most_specific_rule(self):
        now = timezone.now()
        retention = Retention(
            max_age=7 * DAY,
            by_state={"discarded": 30 * DAY, "completed": HOUR},
            by_queue={"audit": 90 * DAY},
            by_worker={w.FailWorker.worker_path: 2 * HOUR})
        f = self.finished
        gone = [
            f("completed", 2 * HOUR, now=now),                       # state: 1 hour
            f("discarded", 31 * DAY, now=now),                       # state: 30 days
            f("cancelled", 8 * DAY, now=now),                        # max_age: 7 days
            f("cancelled", 91 * DAY, queue="audit", now=now),        # queue: 90 days
            f("discarded", 3 * HOUR, worker=w.FailWorker, now=now),  # worker beats state
            f("completed", 3 * HOUR, queue="audit", now=now),        # state beats queue
        ]
        kept = [
            f("completed", HOUR - 60, now=now),
            f("discarded", 29 * DAY, now=now),                        # older than max_age
            f("cancelled", 6 * DAY, now=now),
            f("cancelled", 89 * DAY, queue="audit", now=now),         # queue beats max_age
            f("discarded", HOUR, worker=w.FailWorker, now=now),
            f("completed", HOUR + 60, worker=w.FailWorker, now=now),  # worker beats state
        ]
        deleted = prune_jobs(now, 100, retention)
        self.assertEqual(sorted(deleted), sorted(j.pk for j in gone))
        self.assertEqual(states(kept), [j.state for j in kept])
        self.assertEqual(states(gone), [None] * len(gone))

    def test_none_keeps_for_ever(self):
        now = timezone.now()
        old = 365 * DAY
        audit = self.finished("completed", old, queue="audit", now=now)
        report = self.finished("discarded", old, worker=w.FailWorker, now=now)
        cancelled = self.finished("cancelled", old, now=now)
        other = self.finished("completed", old, now=now)
        retention = Retention(max_age=DAY, by_queue={"audit": math.inf},
                              by_worker={w.FailWorker.worker_path: math.inf},
                              by_state={"cancelled": math.inf})
        self.assertEqual(prune_jobs(now, 100, retention), [other.pk])
        self.assertEqual(states([audit, report, cancelled]),
                         ["completed", "discarded", "cancelled"])
        # max_age for ever: only the rules prune.
        self.assertEqual(prune_jobs(now, 100, Retention(math.inf, by_state={"cancelled": DAY})),
                         [cancelled.pk])
        self.assertEqual(len(Retention(math.inf).rules()), 0)

    def test_limit_bounds_a_pass_across_rules(self):
        now = timezone.now()
        for i in range(3):
            self.finished("completed", 2 * HOUR + i, now=now)
            self.finished("cancelled", 8 * DAY + i, now=now)
        retention = Retention(7 * DAY, by_state={"completed": HOUR})
        self.assertEqual([len(prune_jobs(now, 4, retention)) for _ in range(3)], [4, 2, 0])

    def test_a_job_that_left_its_finished_state_is_not_deleted_nor_reported(self):
        now = timezone.now()
        [stays, goes] = [self.finished("completed", 2 * DAY, now=now) for _ in range(2)]
        retried = []

        def retry_after_the_read(execute, sql, params, many, context):
            # A retry from the admin between the pruner's read and its delete.
            result = execute(sql, params, many, context)
            if not retried and sql.lstrip().upper().startswith("SELECT") and "COALESCE" in sql:
                retried.append(True)
                Job.objects.filter(pk=stays.pk).update(state="available", completed_at=None)
            return result

        with connection.execute_wrapper(retry_after_the_read):
            deleted = prune_jobs(now, 10, Retention(DAY))
        self.assertEqual(retried, [True])
        self.assertEqual(deleted, [goes.pk])
        self.assertEqual(reload(stays).state, "available")

    def test_prune_reports_the_deletes(self):
        now = timezone.now()
        job = self.finished("discarded", 2 * DAY, now=now)
        calls = receive_changes(self)
        prune_jobs(now, 10, Retention(DAY))
        [change] = [c for call in calls for c in call.changes]
        self.assertEqual((change.id, change.old, change.new),
                         (job.pk, "discarded", None))


class PruneIndexTests(TestCase):
    """Each rule's query is a bounded range scan of the prune index, on both databases."""

    RETENTION = Retention(7 * DAY, by_state={"discarded": 30 * DAY, "completed": HOUR},
                          by_queue={"audit": 90 * DAY},
                          by_worker={w.FailWorker.worker_path: 2 * HOUR})

    def plans(self):
        now = timezone.now()
        queries = prunable(now, self.RETENTION)
        self.assertEqual(len(queries), 5)  # a worker, two states, a queue, the default
        explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        plans = []
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # On a near-empty table any plan is cheap and the planner may read the table
                # whole; without sequential scans, the plan still scans the table if no index
                # can serve the query, so the test sees whether the index can.
                cursor.execute("SET LOCAL enable_seqscan = off")
            for query in queries:
                sql, params, _ = prune_statement(query, 1000)
                cursor.execute(explain + sql, params)
                plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
        return plans

    def test_every_rule_uses_the_prune_index(self):
        for plan in self.plans():
            with self.subTest(plan=plan):
                if connection.vendor == "sqlite":
                    # EXPLAIN QUERY PLAN: a range search of the index, no sort of its own.
                    self.assertIn("SEARCH django_jobs_job USING INDEX django_jobs_prune (<expr><?)",
                                  plan)
                    self.assertNotIn("TEMP B-TREE", plan)
                else:
                    self.assertIn("Index Scan using django_jobs_prune", plan)
                    self.assertIn("Limit", plan)
                    self.assertNotIn("Seq Scan", plan)
                    self.assertNotIn("Sort", plan.replace("Sort Key", ""))

    def test_the_pruner_reads_rows_as_the_orm_does(self):
        now = timezone.now()
        job = make("completed", completed_at=ago(2 * DAY, now))
        Job.objects.filter(pk=job.pk).update(meta={"m": [1, "x"]})
        calls = receive_changes(self)
        self.assertEqual(prune_jobs(now, 10, Retention(DAY)), [job.pk])
        [change] = [c for call in calls for c in call.changes]
        self.assertEqual((change.meta, change.queue, change.worker),
                         ({"m": [1, "x"]}, "plug", w.ReturnWorker.worker_path))
