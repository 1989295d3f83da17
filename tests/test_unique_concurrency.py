"""Unique jobs under concurrent inserts: the database, not timing, keeps one slot holder.

Every inserter has its own connection (a thread, or a forked process) and all of them start
at once from a barrier; each holds its transaction open a little after inserting so that the
others really run into its uncommitted row.
"""

import datetime
import multiprocessing
import threading
import time
import unittest

from django.db import connections, transaction
from django.test import TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs.models import Job

from .helpers import wait_for_blocked_sessions
from .waits import get_from, in_thread, join_all, race, wait_event
from .workers import UniqueByEmailWorker, UniqueWorker

THREADS = 10
ROUNDS = 3
HOLD = 0.02  # seconds a transaction stays open after its insert


def insert_in_transaction(worker, args, **options):
    with transaction.atomic():
        job = worker.enqueue(args, **options)
        time.sleep(HOLD)
    return job.pk, job.conflict


class ThreadedUniqueInsertTests(TransactionTestCase):
    def assertOneWinner(self, results, args):
        ids = {pk for pk, _ in results}
        self.assertEqual(len(ids), 1, results)
        self.assertEqual(sorted(conflict for _, conflict in results),
                         [False] + [True] * (len(results) - 1), results)
        rows = list(Job.objects.filter(args=args).values_list("id", flat=True))
        self.assertEqual(rows, list(ids))

    def test_same_unique_job_from_many_threads_in_transactions(self):
        for round_ in range(ROUNDS):
            with self.subTest(round=round_):
                args = {"id": round_}
                results = race(THREADS, lambda i, a=args: insert_in_transaction(UniqueWorker, a))
                self.assertOneWinner(results, args)
        self.assertEqual(Job.objects.count(), ROUNDS)

    def test_same_unique_job_from_many_threads_in_autocommit(self):
        for round_ in range(ROUNDS):
            with self.subTest(round=round_):
                args = {"id": round_}

                def target(i, args=args):
                    job = UniqueWorker.enqueue(args)
                    return job.pk, job.conflict

                self.assertOneWinner(race(THREADS, target), args)

    def test_expired_holder_is_replaced_by_exactly_one_job(self):
        for round_ in range(ROUNDS):
            with self.subTest(round=round_):
                args = {"id": round_}
                old = UniqueWorker.enqueue(args)
                Job.objects.filter(pk=old.pk).update(
                    inserted_at=timezone.now() - datetime.timedelta(hours=1))
                results = race(THREADS,
                               lambda i, a=args: insert_in_transaction(UniqueWorker, a))
                ids = {pk for pk, _ in results}
                self.assertEqual(len(ids), 1, results)
                self.assertNotIn(old.pk, ids)
                self.assertEqual(sum(not conflict for _, conflict in results), 1)
                self.assertEqual(Job.objects.filter(args=args).count(), 2)
                holders = Job.objects.filter(args=args, unique_slot__isnull=False)
                self.assertEqual(list(holders.values_list("id", flat=True)), list(ids))

    def test_concurrent_replace_keeps_one_job(self):
        email = {"email": "race@example.com"}
        UniqueByEmailWorker.enqueue({**email, "n": -1}, schedule_in=60)
        built_times = {}

        def target(i):
            job = UniqueByEmailWorker.new({**email, "n": i}, schedule_in=120 + i)
            built_times[i] = job.scheduled_at
            with transaction.atomic():
                returned = django_jobs.insert(job)
                time.sleep(HOLD)
            return returned.pk, returned.conflict

        results = race(THREADS, target)
        self.assertTrue(all(conflict for _, conflict in results))
        self.assertEqual(len({pk for pk, _ in results}), 1)
        row = Job.objects.get()
        # One writer's values won, whole: args and scheduled_at from the same insert.
        n = row.args["n"]
        self.assertIn(n, range(THREADS))
        self.assertEqual(row.scheduled_at, built_times[n])

    def test_overlapping_insert_all_from_many_threads(self):
        # Every thread inserts the same keys, in the same order, in one insert_all each.
        for round_ in range(ROUNDS):
            with self.subTest(round=round_):
                keys = [f"{round_}-{k}" for k in range(30)]

                def target(i, keys=keys):
                    with transaction.atomic():
                        jobs = django_jobs.insert_all([UniqueWorker.new({"k": k})
                                                       for k in keys])
                        time.sleep(HOLD)
                    return {job.args["k"]: (job.pk, job.conflict) for job in jobs}

                results = race(8, target)
                by_key = dict(Job.objects.filter(args__k__in=keys)
                              .values_list("args__k", "id"))
                self.assertEqual(len(by_key), len(keys))
                for mapping in results:
                    self.assertEqual({k: pk for k, (pk, _) in mapping.items()}, by_key)
                for key in keys:
                    self.assertEqual(sum(not m[key][1] for m in results), 1, key)

    def test_overlapping_insert_all_in_opposite_orders(self):
        # Two batches sharing keys in opposite orders must not each wait for a row the other
        # inserted (PostgreSQL would end that cycle with "deadlock detected").
        # Made deterministic: a third transaction holds the middle key, both batches insert
        # up to it from opposite ends and wait; then it rolls back and they carry on into each
        # other's rows.
        keys = list(range(200))
        middle = {"k": 100}
        holding, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)  # never leave the holder waiting
        errors, results = [], {}

        def hold_middle():
            with transaction.atomic():
                UniqueWorker.enqueue(middle)
                holding.set()
                release.wait(timeout=30)
                transaction.set_rollback(True)

        def batch(name, order):
            jobs = [UniqueWorker.new({"k": k}) for k in order]
            try:
                with transaction.atomic():
                    results[name] = {j.args["k"]: j.pk for j in django_jobs.insert_all(jobs)}
            except BaseException as exc:
                errors.append(exc)

        holder = in_thread(hold_middle, name="holder of the middle key")
        wait_event(holding, 30, what="the middle key to be held")
        threads = [in_thread(lambda: batch("up", keys), name="batch up"),
                   in_thread(lambda: batch("down", keys[::-1]), name="batch down")]
        wait_for_blocked_sessions(2)
        release.set()
        join_all([holder, *threads], 60, what="the holder and both batches")
        if errors:
            raise errors[0]
        self.assertEqual(Job.objects.count(), len(keys))
        by_key = dict(Job.objects.values_list("args__k", "id"))
        self.assertEqual(results["up"], by_key)
        self.assertEqual(results["down"], by_key)




def _process_insert(barrier, queue, args):
    """Body of one inserting process (forked: inherits settings and the test database)."""
    try:
        barrier.wait(timeout=30)
        with transaction.atomic():
            job = UniqueWorker.enqueue(args)
            time.sleep(HOLD)
        queue.put((job.pk, job.conflict))
    except BaseException as exc:
        queue.put(("error", repr(exc)))
    finally:
        connections.close_all()


@unittest.skipUnless("fork" in multiprocessing.get_all_start_methods(), "needs fork()")
class ProcessUniqueInsertTests(TransactionTestCase):
    PROCESSES = 8

    def test_same_unique_job_from_many_processes(self):
        context = multiprocessing.get_context("fork")
        for round_ in range(2):
            with self.subTest(round=round_):
                args = {"proc": round_}
                # Children must not share the parent's open connection.
                connections.close_all()
                barrier = context.Barrier(self.PROCESSES)
                queue = context.Queue()
                processes = [context.Process(target=_process_insert, args=(barrier, queue, args),
                                             name=f"inserter-{i}", daemon=True)
                             for i in range(self.PROCESSES)]
                for process in processes:
                    process.start()
                    self.addCleanup(process.kill)  # no-op once it has exited
                results = [get_from(queue, 60, what=f"the result of inserting process {i}")
                           for i in range(len(processes))]
                join_all(processes, 30, what="the inserting processes")
                self.assertEqual([p.exitcode for p in processes], [0] * self.PROCESSES)
                self.assertNotIn("error", [pk for pk, _ in results], results)
                self.assertEqual(len({pk for pk, _ in results}), 1, results)
                self.assertEqual(sum(not conflict for _, conflict in results), 1, results)
                self.assertEqual(Job.objects.filter(args=args).count(), 1)
