"""``fetch_jobs`` (over the engine's ``fetch_statement``): what a claim takes, in what order,
what it writes, and that two concurrent claimers never get the same job; ``serialize``."""

from __future__ import annotations

import threading
import time

from django.db import connections, transaction
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from ..models import STATE_BITS, Job, JobState
from .support import (BY, QUEUE, EngineMixin, ago, build, count_statements, enqueue, fresh, put,
                      reload, row_values, states)
from .waits import join_all, race, wait_event
from .workers import ContractWorker

class FetchTests(EngineMixin, TestCase):
    def fetch(self, limit=10, queue=QUEUE, now=None, **kwargs):
        return self.engine.fetch_jobs(queue, limit, BY, now or timezone.now(), **kwargs)

    def test_claims_at_most_limit_and_marks_them_executing(self):
        jobs = enqueue(5)
        now = timezone.now()
        claimed = self.fetch(3, now=now)
        self.assertEqual([j.pk for j in claimed], [j.pk for j in jobs[:3]])
        rows = fresh(claimed)
        for job, row in zip(claimed, rows, strict=True):
            self.assertEqual((row.state, row.attempt, row.attempted_at, row.attempted_by),
                             ("executing", 1, now, BY))
            # What the fetch returns is the row as written (jobs_from_rows).
            self.assertEqual(row_values(job), row_values(row))
            self.assertEqual(job._state.db, self.engine.alias)
            self.assertFalse(job._state.adding)
        self.assertEqual(states(jobs[3:]), ["available", "available"])
        self.assertEqual([j.attempt for j in fresh(jobs[3:])], [0, 0])

    def test_bumps_the_attempt(self):
        [job] = put(enqueue(max_attempts=5), "available", attempt=2)
        [claimed] = self.fetch()
        self.assertEqual((claimed.attempt, reload(job).attempt), (3, 3))

    def test_claims_only_available_jobs_of_its_queue(self):
        mine = enqueue(2)
        enqueue(2, queue="other")
        for state in JobState.values:
            if state != "available":
                put(enqueue(1, start=50), state, attempt=1)
        claimed = self.fetch()
        self.assertEqual([j.pk for j in claimed], [j.pk for j in mine])
        self.assertEqual(self.fetch(), [])
        self.assertEqual(Job.objects.filter(queue="other", state="available").count(), 2)
        self.assertEqual(Job.objects.filter(state="executing").count(), 3)

    def test_limit_zero_or_less_claims_nothing(self):
        enqueue(2)
        with count_statements() as statements:
            self.assertEqual(self.fetch(0), [])
            self.assertEqual(self.fetch(-1), [])
        self.assertEqual(statements, [])
        self.assertEqual(Job.objects.filter(state="available").count(), 2)

    def test_orders_by_priority_scheduled_at_id(self):
        now = timezone.now()
        a = ContractWorker.new({"n": "a"}, queue=QUEUE, priority=3, scheduled_at=ago(9, now))
        b = ContractWorker.new({"n": "b"}, queue=QUEUE, priority=0, scheduled_at=ago(1, now))
        c = ContractWorker.new({"n": "c"}, queue=QUEUE, priority=0, scheduled_at=ago(5, now))
        d = ContractWorker.new({"n": "d"}, queue=QUEUE, priority=9, scheduled_at=ago(99, now))
        same = build(3, priority=1)  # one priority, one scheduled_at: by id
        for job in same:
            job.scheduled_at = ago(3, now)
        jobs = [a, b, c, d, *same]
        self.engine.insert_jobs(jobs)
        self.assertEqual([j.pk for j in self.fetch(2, now=now)], [c.pk, b.pk])
        self.assertEqual([j.pk for j in self.fetch(10, now=now)],
                         [*(j.pk for j in same), a.pk, d.pk])

    def test_ids_restrict_the_claim(self):
        jobs = enqueue(6)
        done = put(jobs[5:], "completed", completed_at=timezone.now())[0]
        claimed = self.fetch(2, ids=[jobs[4].pk, jobs[1].pk, jobs[3].pk, done.pk])
        self.assertEqual([j.pk for j in claimed], [jobs[1].pk, jobs[3].pk])
        self.assertEqual([j.pk for j in self.fetch(ids=[jobs[4].pk, done.pk])], [jobs[4].pk])
        self.assertEqual(self.fetch(ids=[]), [])
        self.assertEqual(states(jobs), ["available", "executing", "available", "executing",
                                        "executing", "completed"])

    def test_releases_the_unique_key_unless_executing_is_a_unique_state(self):
        [releasing] = enqueue(unique={"period": "infinity", "states": ["available",
                                                                        "scheduled"]})
        [keeping] = enqueue(unique={"period": "infinity"}, start=1)  # "successful" states
        self.assertIsNotNone(releasing.unique_key)
        self.assertEqual(releasing.unique_states & STATE_BITS["executing"], 0)
        self.assertNotEqual(keeping.unique_states & STATE_BITS["executing"], 0)
        claimed = {job.pk: job for job in self.fetch()}
        self.assertIsNone(claimed[releasing.pk].unique_key)
        self.assertEqual(claimed[keeping.pk].unique_key, keeping.unique_key)
        row = reload(releasing)
        self.assertEqual((row.unique_key, row.unique_slot), (None, None))
        row = reload(keeping)
        self.assertEqual((row.unique_key, row.unique_slot), (keeping.unique_key,) * 2)


class ConcurrentFetchTests(EngineMixin, TransactionTestCase):
    def test_concurrent_claimers_never_get_the_same_job(self):
        total, claimers = 200, 4
        enqueue(total)
        engine = self.engine

        def claimer(index):
            got = []
            while jobs := engine.fetch_jobs(QUEUE, 7, [f"node-{index}", str(index)],
                                            timezone.now()):
                got.extend(job.pk for job in jobs)
            return got

        claimed = race(claimers, claimer, what="claimers")
        every = [pk for got in claimed for pk in got]
        self.assertEqual(len(every), total)
        self.assertEqual(len(set(every)), total, "a job was claimed twice")
        self.assertEqual(Job.objects.filter(state="executing", attempt=1).count(), total)
        # Each job names the claimer that got it.
        for index, got in enumerate(claimed):
            owners = Job.objects.filter(pk__in=got).values_list("attempted_by", flat=True)
            self.assertEqual(list(owners), [[f"node-{index}", str(index)]] * len(got))


class SerializeTests(EngineMixin, TransactionTestCase):
    def test_a_second_transaction_on_the_same_key_waits_for_the_first_to_end(self):
        engine = self.engine
        held, order = threading.Event(), []

        def first():
            try:
                with transaction.atomic():
                    engine.serialize(["chain:a"])
                    order.append("first has it")
                    held.set()
                    time.sleep(0.3)  # the other one must wait out this
                    order.append("first ends")
            finally:
                connections.close_all()

        def second():
            try:
                wait_event(held, what="the first transaction to take the key")
                with transaction.atomic():
                    engine.serialize(["chain:b", "chain:a"])
                    order.append("second has it")
            finally:
                connections.close_all()

        threads = [threading.Thread(target=f, daemon=True) for f in (first, second)]
        for thread in threads:
            thread.start()
        join_all(threads, what="the two transactions")
        self.assertEqual(order, ["first has it", "first ends", "second has it"])

    def test_no_keys_takes_nothing(self):
        with count_statements() as statements, transaction.atomic():
            self.engine.serialize([])
        self.assertFalse([s for s in statements if "lock" in s.lower() or "UPDATE" in s])
