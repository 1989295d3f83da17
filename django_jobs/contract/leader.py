"""Leadership (``acquire_leadership``, ``resign_leadership``) and the leader's work over the
door's primitives: the stager's, pruner's and lifeline's statements (their decisions live in
:mod:`django_jobs.plugins`; what they select and write runs on the engine under test)."""

from __future__ import annotations

import uuid

from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from ..models import FINISHED_AT, Job, JobChange, Peer, Producer, error_entry
from ..plugins.lifeline import rescue_orphans
from ..plugins.pruner import prune_jobs
from ..plugins.stager import stage_jobs
from .support import (FINAL, NOT_FINAL, QUEUE, EngineMixin, ago, enqueue, later, producer_row,
                      put, reload, row_values, states)
from .waits import race
from .watching import receive_changes

class StageTests(EngineMixin, TestCase):
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
        self.assertEqual(stage_jobs(self.engine, now, 100), ["a", "b"])
        self.assertEqual(states([due, retry, at_now, future, future_retry, *others]),
                         ["available", "available", "available", "scheduled", "retryable",
                          "cancelled", "suspended", "completed", "discarded", "executing"])
        row = reload(retry)
        self.assertEqual((row.attempt, row.errors, row.unique_key),
                         (1, retry.errors, retry.unique_key))
        self.assertEqual(stage_jobs(self.engine, now, 100), [])

    def test_limit_takes_the_earliest(self):
        now = timezone.now()
        jobs = [put(enqueue(queue=f"q{i}"), "scheduled", scheduled_at=ago(10 - i, now))[0]
                for i in range(5)]
        self.assertEqual(stage_jobs(self.engine, now, 2), ["q0", "q1"])
        self.assertEqual(states(jobs), ["available"] * 2 + ["scheduled"] * 3)


class PruneTests(EngineMixin, TestCase):
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
        self.assertEqual(prune_jobs(self.engine, ago(50, now), 100), 3)
        self.assertEqual(set(Job.objects.values_list("pk", flat=True)),
                         {j.pk for j in [*young, boundary, *unfinished]})
        self.assertEqual(prune_jobs(self.engine, ago(50, now), 100), 0)

    def test_oldest_first_bounded_by_limit(self):
        now = timezone.now()
        # Inserted newest first, so the oldest are not the lowest ids.
        jobs = [put(enqueue(start=i), FINAL[i % 3],
                    **{FINISHED_AT[FINAL[i % 3]]: ago(100 + i, now)})[0] for i in range(5)]
        self.assertEqual(prune_jobs(self.engine, ago(10, now), 2), 2)
        self.assertEqual(states(jobs), ["completed", "cancelled", "discarded", None, None])
        self.assertEqual([prune_jobs(self.engine, ago(10, now), 2) for _ in range(3)],
                         [2, 1, 0])
        self.assertEqual(Job.objects.count(), 0)


class RescueTests(EngineMixin, TestCase):
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
        result = rescue_orphans(self.engine, ago(60, now), now)
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
        self.assertEqual(rescue_orphans(self.engine, ago(60, now), now),
                         {"rescued": 0, "discarded": 0, "queues": [], "producers_removed": 0})

    def test_rescue_reports_the_changes(self):
        now = timezone.now()
        [orphan] = put(enqueue(meta={"m": 1}), "executing", attempt=1,
                       attempted_by=["gone", str(uuid.uuid4())])
        calls = receive_changes(self)
        rescue_orphans(self.engine, ago(60, now), now)
        self.assertEqual([c for call in calls for c in call.changes],
                         [JobChange(orphan.pk, orphan.worker, QUEUE, {"m": 1}, "executing",
                                    "available")])


class LeadershipTests(EngineMixin, TestCase):
    NAME = "contract-lease"

    def lease(self):
        return Peer.objects.get(name=self.NAME)

    def test_take_renew_contend_expire(self):
        now = timezone.now()
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "a", now, later(10, now)))
        self.assertEqual((self.lease().node, self.lease().started_at, self.lease().expires_at),
                         ("a", now, later(10, now)))
        # Renewed by its holder: started_at stays.
        renewed = later(5, now)
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "a", renewed,
                                                       later(10, renewed)))
        self.assertEqual((self.lease().node, self.lease().started_at, self.lease().expires_at),
                         ("a", now, later(10, renewed)))
        # Contended before it expires: the holder keeps it.
        self.assertFalse(self.engine.acquire_leadership(self.NAME, "b", later(10, renewed),
                                                        later(20, renewed)))
        self.assertEqual((self.lease().node, self.lease().expires_at),
                         ("a", later(10, renewed)))
        # Expired: another node takes it, and the old holder has lost it.
        expired = later(11, renewed)
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "b", expired,
                                                       later(10, expired)))
        self.assertFalse(self.engine.acquire_leadership(self.NAME, "a", expired,
                                                        later(10, expired)))
        self.assertEqual((self.lease().node, self.lease().started_at), ("b", expired))
        # Leases of other names are independent.
        self.assertTrue(self.engine.acquire_leadership("other-lease", "a", expired,
                                                       later(10, expired)))

    def test_resign(self):
        now = timezone.now()
        self.engine.acquire_leadership(self.NAME, "a", now, later(60, now))
        self.engine.resign_leadership(self.NAME, "b")  # not the holder: nothing happens
        self.assertEqual(self.lease().node, "a")
        self.assertFalse(self.engine.acquire_leadership(self.NAME, "b", now, later(60, now)))
        self.engine.resign_leadership(self.NAME, "a")
        self.assertFalse(Peer.objects.filter(name=self.NAME).exists())
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "b", now, later(60, now)))


class LeadershipRaceTests(EngineMixin, TransactionTestCase):
    def test_concurrent_contenders_get_one_leader(self):
        now = timezone.now()
        won = race(4, lambda i: self.engine.acquire_leadership(
            "contract-race", f"node-{i}", now, later(30, now)), what="contenders")
        winners = [f"node-{i}" for i, leads in enumerate(won) if leads]
        self.assertEqual(len(winners), 1, won)
        self.assertEqual(Peer.objects.get(name="contract-race").node, winners[0])
