"""Migration 0008 (fewer checks per insert) on a table that already holds jobs of every kind:
written under 0007, the jobs still behave after it: unique conflicts are found, chains run in
order, batches keep their members."""

from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import TransactionTestCase

import django_jobs
from django_jobs import Worker
from django_jobs.models import Job, JobState
from django_jobs.pro.batch import BatchWorker, all_batch_jobs
from django_jobs.testing import drain_queue

from .workers import UniqueWorker

BEFORE = [("django_jobs", "0007_queue_commands")]
QUEUE = "migration_0008"
#: Order in which the chained jobs ran (their args' seq), in this process.
RAN: list[int] = []


class MigratedChain(Worker):
    queue = QUEUE
    chain = True

    def perform(self, job):
        RAN.append(job.args["seq"])


class MigratedBatch(BatchWorker):
    queue = QUEUE

    def process(self, job):
        return None

    def handle_completed(self, job):
        return None


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return [key for key in executor.loader.graph.leaf_nodes() if key[0] == "django_jobs"]


class MigrationWithRowsTests(TransactionTestCase):
    def tearDown(self):
        migrate(latest())  # whatever happened, leave the schema the suite expects

    def test_rows_written_before_0008_behave_after_it(self):
        migrate(BEFORE)
        unique = UniqueWorker.enqueue({"id": 1})
        chained = django_jobs.insert_all(MigratedChain.new({"seq": i}) for i in range(4))
        members = django_jobs.insert_all(MigratedBatch.new_batch([{"n": n} for n in range(3)]))
        plain = django_jobs.insert_all([UniqueWorker.new({"id": 2})])
        self.assertEqual([job.state for job in chained],
                         [JobState.AVAILABLE] + [JobState.SUSPENDED] * 3)

        migrate(latest())

        # Unique: the holder written before is found, by a single and by a bulk insert.
        again = UniqueWorker.enqueue({"id": 1})
        self.assertTrue(again.conflict)
        self.assertEqual(again.pk, unique.pk)
        [bulk_again, other] = django_jobs.insert_all([UniqueWorker.new({"id": 1}),
                                                      UniqueWorker.new({"id": 2})])
        self.assertTrue(bulk_again.conflict)
        self.assertTrue(other.conflict)
        self.assertEqual(other.pk, plain[0].pk)
        self.assertEqual(Job.objects.filter(worker=UniqueWorker.worker_path).count(), 2)
        # Chains: run one at a time, in insertion order, the head first.
        RAN.clear()
        drain_queue(QUEUE, with_recursion=True)
        self.assertEqual(RAN, [0, 1, 2, 3])
        self.assertEqual(set(Job.objects.filter(pk__in=[j.pk for j in chained])
                             .values_list("state", flat=True)), {JobState.COMPLETED})
        # Batches: the members are still found as members, and completed.
        found = all_batch_jobs(members[0])
        self.assertEqual(sorted(j.pk for j in found), sorted(j.pk for j in members))
        self.assertEqual({j.state for j in found}, {JobState.COMPLETED})
        self.assertTrue(Job.objects.filter(meta__has_key="batch_callback").exists())
        # The table still refuses what the dropped checks refused (the named ones remain).
        for field, value in (("priority", -1), ("attempt", -1), ("max_attempts", 0)):
            with self.subTest(field=field), self.assertRaises(IntegrityError), \
                    transaction.atomic():
                Job.objects.filter(pk=unique.pk).update(**{field: value})
