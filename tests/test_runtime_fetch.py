"""``engine.fetch_jobs``: what one fetch claims, and that concurrent fetchers never share a job."""

import datetime
import threading

from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs.engines import get_engine
from django_jobs.models import Job

from .runtime_workers import RecordWorker, ReturnWorker


def enqueue_many(count, queue="fetch", **options):
    return django_jobs.insert_all([RecordWorker.new({"n": i}, queue=queue, **options)
                                   for i in range(count)])


class FetchTests(TransactionTestCase):
    def setUp(self):
        self.engine = get_engine()

    def test_claims_at_most_limit_and_marks_them_executing(self):
        jobs = enqueue_many(5)
        now = timezone.now()
        claimed = self.engine.fetch_jobs("fetch", 3, ["node-a", "producer-1"], now)
        self.assertEqual(len(claimed), 3)
        self.assertEqual([j.pk for j in claimed], [j.pk for j in jobs[:3]])
        for job in claimed:
            self.assertEqual(job.state, "executing")
            self.assertEqual(job.attempt, 1)
            self.assertEqual(job.attempted_by, ["node-a", "producer-1"])
            row = Job.objects.get(pk=job.pk)
            self.assertEqual(row.state, "executing")
            self.assertEqual(row.attempt, 1)
            self.assertEqual(row.attempted_at, now)
            self.assertEqual(row.attempted_by, ["node-a", "producer-1"])
        left = Job.objects.filter(pk__in=[j.pk for j in jobs[3:]])
        self.assertEqual(set(left.values_list("state", flat=True)), {"available"})
        self.assertEqual(set(left.values_list("attempt", flat=True)), {0})

    def test_fetch_bumps_existing_attempt(self):
        [job] = enqueue_many(1, max_attempts=5)
        Job.objects.filter(pk=job.pk).update(attempt=2)
        [claimed] = self.engine.fetch_jobs("fetch", 10, ["n", "p"], timezone.now())
        self.assertEqual(claimed.attempt, 3)
        self.assertEqual(Job.objects.get(pk=job.pk).attempt, 3)

    def test_takes_only_available_jobs_of_its_queue(self):
        mine = enqueue_many(2)
        enqueue_many(2, queue="other")
        RecordWorker.enqueue({"n": "later"}, queue="fetch", schedule_in=60)
        retryable = RecordWorker.enqueue({"n": "retry"}, queue="fetch")
        Job.objects.filter(pk=retryable.pk).update(state="retryable")
        done = RecordWorker.enqueue({"n": "done"}, queue="fetch")
        Job.objects.filter(pk=done.pk).update(state="completed", completed_at=timezone.now())
        claimed = self.engine.fetch_jobs("fetch", 10, ["n", "p"], timezone.now())
        self.assertEqual(sorted(j.pk for j in claimed), sorted(j.pk for j in mine))
        self.assertEqual(self.engine.fetch_jobs("fetch", 10, ["n", "p"], timezone.now()), [])
        self.assertEqual(Job.objects.filter(queue="other", state="available").count(), 2)

    def test_zero_limit_claims_nothing(self):
        enqueue_many(2)
        self.assertEqual(self.engine.fetch_jobs("fetch", 0, ["n", "p"], timezone.now()), [])
        self.assertEqual(Job.objects.filter(state="available").count(), 2)

    def test_returns_jobs_by_priority_scheduled_at_id(self):
        now = timezone.now()
        at = lambda s: now - datetime.timedelta(seconds=s)  # noqa: E731
        a = RecordWorker.enqueue({"n": "a"}, queue="fetch", priority=3, scheduled_at=at(9))
        b = RecordWorker.enqueue({"n": "b"}, queue="fetch", priority=0, scheduled_at=at(1))
        c = RecordWorker.enqueue({"n": "c"}, queue="fetch", priority=0, scheduled_at=at(5))
        d = RecordWorker.enqueue({"n": "d"}, queue="fetch", priority=9, scheduled_at=at(99))
        first = self.engine.fetch_jobs("fetch", 2, ["n", "p"], now)
        self.assertEqual([j.pk for j in first], [c.pk, b.pk])
        rest = self.engine.fetch_jobs("fetch", 5, ["n", "p"], now)
        self.assertEqual([j.pk for j in rest], [a.pk, d.pk])

    def test_concurrent_fetchers_never_claim_the_same_job(self):
        total = 300
        enqueue_many(total)
        threads_count = 6
        claimed: list[list[int]] = [[] for _ in range(threads_count)]
        errors = []
        barrier = threading.Barrier(threads_count)

        def fetcher(index):
            try:
                barrier.wait(10)
                while True:
                    jobs = self.engine.fetch_jobs("fetch", 7, [f"node-{index}", str(index)],
                                                  timezone.now())
                    if not jobs:
                        return
                    claimed[index].extend(j.pk for j in jobs)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=fetcher, args=(i,)) for i in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual(errors, [])
        every = [pk for ids in claimed for pk in ids]
        self.assertEqual(len(every), total)
        self.assertEqual(len(set(every)), total, "a job was claimed twice")
        self.assertEqual(Job.objects.filter(state="executing").count(), total)
        self.assertEqual(Job.objects.filter(attempt=1).count(), total)
        # Each job's attempted_by names the fetcher that got it.
        for index, ids in enumerate(claimed):
            owners = Job.objects.filter(pk__in=ids).values_list("attempted_by", flat=True)
            for owner in owners:
                self.assertEqual(owner, [f"node-{index}", str(index)])
        self.assertGreater(sum(1 for ids in claimed if ids), 1, "only one fetcher got work")

    def test_ack_only_touches_executing_jobs(self):
        from django_jobs.execution.outcome import Outcome

        [job] = enqueue_many(1)
        [claimed] = self.engine.fetch_jobs("fetch", 1, ["n", "p"], timezone.now())
        # Cancelled meanwhile (say from the admin): the late outcome must not overwrite it.
        django_jobs.cancel_job(claimed)
        self.engine.ack([Outcome(job.pk, "completed", timezone.now())])
        self.assertEqual(Job.objects.get(pk=job.pk).state, "cancelled")

    def test_ack_writes_completed_in_bulk_and_others_with_changes(self):
        from django_jobs.execution.outcome import Outcome

        jobs = [ReturnWorker.enqueue({"i": i}, queue="fetch") for i in range(4)]
        self.engine.fetch_jobs("fetch", 4, ["n", "p"], timezone.now())
        at = timezone.now()
        later = at + datetime.timedelta(seconds=30)
        self.engine.ack([
            Outcome(jobs[0].pk, "completed", at),
            Outcome(jobs[1].pk, "completed", at),
            Outcome(jobs[2].pk, "retryable", at, {"scheduled_at": later,
                                                  "errors": [{"at": at.isoformat(),
                                                              "attempt": 1, "error": "x"}]}),
            Outcome(jobs[3].pk, "discarded", at, {"discarded_at": at}),
        ])
        rows = {j.pk: j for j in Job.objects.filter(pk__in=[j.pk for j in jobs])}
        self.assertEqual([rows[j.pk].state for j in jobs],
                         ["completed", "completed", "retryable", "discarded"])
        self.assertEqual(rows[jobs[0].pk].completed_at, at)
        self.assertEqual(rows[jobs[2].pk].scheduled_at, later)
        self.assertEqual(rows[jobs[2].pk].errors[0]["error"], "x")
        self.assertEqual(rows[jobs[3].pk].discarded_at, at)
