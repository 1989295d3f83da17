"""Writing jobs: ``Worker.enqueue``, ``django_jobs.insert`` and ``insert_all``."""

import datetime
import decimal
import subprocess
import sys
import uuid

from django.db import IntegrityError, connection, transaction
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobError, WorkerNotImportable
from django_jobs.engines import insert_engine
from django_jobs.models import Job, JobState

from .helpers import count_statements
from .workers import MailerWorker, NoopWorker, OptionsWorker, UniqueWorker

#: Columns compared between a built job and the row read back.
COLUMNS = ("state", "queue", "worker", "args", "meta", "tags", "errors", "attempt",
           "max_attempts", "priority", "attempted_by", "inserted_at", "scheduled_at",
           "attempted_at", "completed_at", "cancelled_at", "discarded_at", "unique_key",
           "unique_states")


class InsertTests(TestCase):
    def assertRowEqualsJob(self, job):
        row = Job.objects.get(pk=job.pk)
        for column in COLUMNS:
            self.assertEqual(getattr(row, column), getattr(job, column), column)
        for column in ("inserted_at", "scheduled_at"):
            value = getattr(row, column)
            self.assertTrue(timezone.is_aware(value), column)
            self.assertEqual(value.utcoffset(), datetime.timedelta(0), column)
        return row

    def test_enqueue_inserts_and_returns_the_job(self):
        before = timezone.now()
        job = MailerWorker.enqueue({"email": "a@example.com"}, meta={"source": "signup"})
        after = timezone.now()
        self.assertIsNotNone(job.pk)
        self.assertFalse(job._state.adding)
        self.assertFalse(job.conflict)
        self.assertEqual(Job.objects.count(), 1)
        row = self.assertRowEqualsJob(job)
        self.assertEqual(row.state, JobState.AVAILABLE)
        self.assertEqual(row.queue, "mailers")
        self.assertEqual(row.worker, "tests.workers.MailerWorker")
        self.assertEqual(row.args, {"email": "a@example.com"})
        self.assertEqual(row.meta, {"source": "signup"})
        self.assertEqual(row.tags, ["email", "outbound"])
        self.assertEqual((row.priority, row.max_attempts, row.attempt), (2, 3, 0))
        self.assertEqual(row.errors, [])
        self.assertIsNone(row.attempted_by)
        self.assertIsNone(row.unique_key)
        self.assertTrue(before <= row.inserted_at <= after)
        self.assertTrue(before <= row.scheduled_at <= after)

    def test_insert_a_built_job(self):
        job = OptionsWorker.new({"n": 1}, priority=3, tags=["x"])
        returned = django_jobs.insert(job)
        self.assertIs(returned, job)
        self.assertIsNotNone(job.pk)
        row = self.assertRowEqualsJob(job)
        self.assertEqual((row.queue, row.priority, row.tags), ("reports", 3, ["x"]))

    def test_insert_time_is_the_insert_not_the_build(self):
        job = NoopWorker.new({})
        built_at = job.inserted_at
        django_jobs.insert(job)
        row = Job.objects.get(pk=job.pk)
        self.assertGreaterEqual(row.inserted_at, built_at)
        # A job without a schedule runs from its insert time on.
        self.assertEqual(row.scheduled_at, row.inserted_at)

    def test_scheduled_job_keeps_its_time(self):
        at = timezone.now() + datetime.timedelta(minutes=10)
        job = NoopWorker.enqueue({}, scheduled_at=at)
        row = self.assertRowEqualsJob(job)
        self.assertEqual(row.state, JobState.SCHEDULED)
        self.assertEqual(row.scheduled_at, at)
        in_two = NoopWorker.enqueue({}, schedule_in=(2, "minutes"))
        row = Job.objects.get(pk=in_two.pk)
        self.assertEqual(row.state, JobState.SCHEDULED)
        self.assertAlmostEqual((row.scheduled_at - row.inserted_at).total_seconds(), 120,
                               delta=1)

    def test_scheduled_at_in_another_zone_reads_back_in_utc(self):
        tz = datetime.timezone(datetime.timedelta(hours=-7))
        at = (timezone.now() + datetime.timedelta(hours=2)).astimezone(tz)
        job = NoopWorker.enqueue({}, scheduled_at=at)
        row = Job.objects.get(pk=job.pk)
        self.assertEqual(row.scheduled_at, at)
        self.assertEqual(row.scheduled_at.utcoffset(), datetime.timedelta(0))

    def test_json_values_read_back_as_built(self):
        args = {
            "uuid": uuid.uuid4(),
            "at": timezone.now(),
            "amount": decimal.Decimal("3.14"),
            "pair": (1, "two"),
            "nested": {"deep": [{"k": None}, True, 1.25, -3]},
            "unicode": "żółw 🐢",
        }
        job = NoopWorker.enqueue(args, meta={"trace": uuid.UUID(int=7), "n": [1, 2]})
        row = self.assertRowEqualsJob(job)
        self.assertEqual(row.args["uuid"], str(args["uuid"]))
        self.assertEqual(row.args["pair"], [1, "two"])
        self.assertEqual(row.args["amount"], "3.14")
        self.assertEqual(row.args["unicode"], "żółw 🐢")
        self.assertEqual(row.meta, {"trace": str(uuid.UUID(int=7)), "n": [1, 2]})

    def test_insert_by_path(self):
        job = django_jobs.insert(django_jobs.new_job("tests.workers.NoopWorker", {"a": 1}))
        self.assertEqual(Job.objects.get(pk=job.pk).worker, "tests.workers.NoopWorker")

    def test_insert_all_empty(self):
        with self.assertNumQueries(0):
            self.assertEqual(django_jobs.insert_all([]), [])
            self.assertEqual(django_jobs.insert_all(iter([])), [])

    def test_insert_all_returns_jobs_in_order_with_ids(self):
        jobs = [NoopWorker.new({"i": i}, priority=i % 10) for i in range(50)]
        returned = django_jobs.insert_all(jobs)
        self.assertEqual(len(returned), 50)
        for i, job in enumerate(returned):
            self.assertIs(job, jobs[i])
            self.assertIsNotNone(job.pk)
        ids = [job.pk for job in returned]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 50)
        rows = {row.pk: row for row in Job.objects.all()}
        self.assertEqual(len(rows), 50)
        for i, job in enumerate(returned):
            self.assertEqual(rows[job.pk].args, {"i": i})
            self.assertEqual(rows[job.pk].priority, i % 10)
        # All jobs of one insert share one insert time.
        self.assertEqual(len({job.inserted_at for job in returned}), 1)
        self.assertRowEqualsJob(returned[17])

    def test_insert_all_accepts_a_generator_and_mixed_workers(self):
        returned = django_jobs.insert_all(
            worker.new({"n": n}) for n, worker in enumerate([NoopWorker, MailerWorker,
                                                            OptionsWorker]))
        self.assertEqual([job.worker.rsplit(".", 1)[1] for job in returned],
                         ["NoopWorker", "MailerWorker", "OptionsWorker"])
        self.assertEqual([job.queue for job in returned], ["default", "mailers", "reports"])
        for job in returned:
            self.assertRowEqualsJob(job)

    def test_insert_all_5000_jobs_in_a_handful_of_statements(self):
        jobs = [NoopWorker.new({"i": i}, tags=["bulk"], meta={"n": i}) for i in range(5000)]
        with count_statements() as statements:
            returned = django_jobs.insert_all(jobs)
        self.assertLessEqual(len(statements), 12, statements)
        self.assertGreaterEqual(len(statements), 1)
        self.assertEqual(len(returned), 5000)
        self.assertTrue(all(a is b for a, b in zip(returned, jobs, strict=True)))
        ids = [job.pk for job in returned]
        self.assertNotIn(None, ids)
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 5000)
        self.assertEqual(Job.objects.count(), 5000)
        by_id = dict(Job.objects.values_list("id", "args"))
        self.assertEqual([by_id[pk] for pk in ids], [{"i": i} for i in range(5000)])
        self.assertEqual(Job.objects.filter(tags=["bulk"]).count(), 5000)
        self.assertRowEqualsJob(returned[0])
        self.assertRowEqualsJob(returned[-1])

    def test_insert_all_5000_unique_jobs_in_a_handful_of_statements(self):
        jobs = [UniqueWorker.new({"i": i}) for i in range(5000)]
        with count_statements() as statements:
            returned = django_jobs.insert_all(jobs)
        self.assertLessEqual(len(statements), 12, statements)
        self.assertEqual(Job.objects.count(), 5000)
        self.assertFalse(any(job.conflict for job in returned))
        by_id = dict(Job.objects.values_list("id", "args"))
        self.assertEqual([by_id[job.pk] for job in returned], [{"i": i} for i in range(5000)])

    def test_bulk_rows_with_characters_the_copy_format_escapes_read_back_as_built(self):
        # PostgreSQL's bulk insert writes COPY text itself: tabs, newlines, backslashes and
        # quotes in every kind of column must arrive unchanged.
        odd = 'tab\there, line\nbreak\r, back\\slash \\N "quoted" \u2603'
        jobs = [NoopWorker.new({"text": odd, "i": i, "nested": {"k": [odd, 1.5, None]}},
                               queue=f"q\\{i % 2}\tx", tags=[odd, "plain"],
                               meta={"m": odd}) for i in range(20)]
        jobs.append(NoopWorker.new({}, scheduled_at=timezone.now() + datetime.timedelta(
            hours=1)))
        returned = django_jobs.insert_all(jobs)
        for job in returned:
            self.assertRowEqualsJob(job)
        self.assertEqual(Job.objects.get(pk=returned[3].pk).queue, "q\\1\tx")
        self.assertEqual(Job.objects.get(pk=returned[3].pk).args["text"], odd)

    def test_bulk_rows_with_values_changed_after_build_are_still_written(self):
        # Values the bulk writer does not know (set by hand after new()) go through the
        # driver's own adapters, or are refused by the database as before.
        jobs = [NoopWorker.new({"i": i}) for i in range(5)]
        jobs[1].args = {"pair": (1, "two"), "d": 1.5}
        jobs[2].max_attempts = True  # an int subclass
        returned = django_jobs.insert_all(jobs)
        row = Job.objects.get(pk=returned[1].pk)
        self.assertEqual(row.args, {"pair": [1, "two"], "d": 1.5})
        self.assertEqual(Job.objects.get(pk=returned[2].pk).max_attempts, 1)
        self.assertEqual(Job.objects.count(), 5)

    def test_postgresql_bulk_writer_knows_every_insert_column(self):
        # The COPY text writer names its columns; a column added to Job without it would
        # silently send every bulk insert down the slower path.
        engine = insert_engine(None)
        if engine.vendor == "postgresql":
            self.assertTrue(engine._copy_lines_fit)
        self.assertIn("unique_states", [f.attname for f in engine.insert_fields])

    def test_flat_args_are_copied_not_shared(self):
        args = {"a": 1, "b": "x", "c": None, "d": True, "e": 2.5}
        job = NoopWorker.new(args)
        self.assertEqual(job.args, args)
        self.assertIsNot(job.args, args)
        args["a"] = 2
        self.assertEqual(job.args["a"], 1)
        # What is not plain JSON still takes the round trip.
        job = NoopWorker.new({1: (1, 2), "n": float("1e300")})
        # (a float of 1e16 and more reads back as the integer it spells, as jsonb gives it)
        self.assertEqual(job.args, {"1": [1, 2], "n": 10 ** 300})
        self.assertEqual(NoopWorker.new({"big": 10 ** 20}).args, {"big": 10 ** 20})
        for bad in ({"x": float("nan")}, {"x": float("inf")}):
            with self.assertRaises(InvalidJobError):
                NoopWorker.new(bad)
        with self.assertRaises(InvalidJobError):
            NoopWorker.new({"k\x00": 1})

    def test_one_insert_is_one_statement(self):
        with count_statements() as statements:
            NoopWorker.enqueue({"a": 1})
        self.assertEqual(len(statements), 1, statements)


def integrity_errors():
    """Exceptions meaning "the database refused the row"."""
    errors = [IntegrityError]
    if connection.vendor == "postgresql":
        import psycopg

        errors.append(psycopg.IntegrityError)  # see DriverErrorTests
    return tuple(errors)


class AtomicityTests(TestCase):
    def test_rollback_of_the_callers_transaction_leaves_no_job(self):
        with self.assertRaises(RuntimeError), transaction.atomic():
            NoopWorker.enqueue({"a": 1})
            django_jobs.insert_all([NoopWorker.new({"b": i}) for i in range(20)])
            UniqueWorker.enqueue({"c": 1})
            self.assertEqual(Job.objects.count(), 22)
            raise RuntimeError("the order could not be saved")
        self.assertEqual(Job.objects.count(), 0)

    def test_inserting_an_inserted_job_is_an_error(self):
        job = NoopWorker.enqueue({"a": 1})
        with self.assertRaises(InvalidJobError) as ctx:
            django_jobs.insert(job)
        self.assertIn("already inserted", str(ctx.exception))
        with self.assertRaises(InvalidJobError):
            django_jobs.insert_all([NoopWorker.new({"b": 1}), job])
        self.assertEqual(Job.objects.count(), 1)

    def test_bad_input_writes_nothing(self):
        good = NoopWorker.new({"a": 1})
        for bad in ("not a job", None, {"args": {}}, 3):
            with self.subTest(bad=bad):
                with self.assertRaises(InvalidJobError):
                    django_jobs.insert_all([good, bad])
                self.assertIsNone(good.pk)
                self.assertEqual(Job.objects.count(), 0)
        with self.assertRaises(InvalidJobError):
            django_jobs.insert("not a job")
        self.assertEqual(Job.objects.count(), 0)

    def test_invalid_build_writes_nothing(self):
        with self.assertRaises(InvalidJobError):
            NoopWorker.enqueue({"user": {1, 2}})
        with self.assertRaises(InvalidJobError):
            NoopWorker.enqueue({}, priority=10)
        with self.assertRaises(InvalidJobError):
            django_jobs.insert_all([NoopWorker.new({"i": i}) for i in range(3)]
                                   + [NoopWorker.new({}, bad_option=1)])
        self.assertEqual(Job.objects.count(), 0)

    def test_hand_made_job_with_unknown_worker_is_refused(self):
        with self.assertRaises(WorkerNotImportable):
            django_jobs.insert_all([NoopWorker.new({}), Job(worker="tests.workers.Missing")])
        self.assertEqual(Job.objects.count(), 0)

    def test_job_rejected_by_the_database_rolls_back_the_whole_batch(self):
        jobs = [NoopWorker.new({"i": i}) for i in range(10)]
        jobs[7].priority = 12  # tampered with after new(): only the database can refuse it
        with self.assertRaises(integrity_errors()):
            django_jobs.insert_all(jobs)
        self.assertEqual(Job.objects.count(), 0)
        # The connection is still usable and a clean batch goes in.
        clean = django_jobs.insert_all([NoopWorker.new({"i": i}) for i in range(10)])
        self.assertEqual(Job.objects.count(), 10)
        self.assertTrue(all(job.pk for job in clean))

    def test_nul_character_is_refused_at_build(self):
        # jsonb cannot store U+0000; a job that only PostgreSQL refuses is a portability trap.
        with self.assertRaises(InvalidJobError) as ctx:
            NoopWorker.new({"text": "a\x00b"})
        self.assertIn("args['text']", str(ctx.exception))
        self.assertEqual(Job.objects.count(), 0)


class CommitTests(TransactionTestCase):
    """Outside a test transaction: a real commit, a real rollback."""

    def test_commit_and_rollback(self):
        with transaction.atomic():
            django_jobs.insert_all([NoopWorker.new({"i": i}) for i in range(100)])
        self.assertEqual(Job.objects.count(), 100)
        with self.assertRaises(ZeroDivisionError), transaction.atomic():
            django_jobs.insert_all([NoopWorker.new({"i": i}) for i in range(100)])
            NoopWorker.enqueue({"last": True})
            1 / 0  # noqa: B018
        self.assertEqual(Job.objects.count(), 100)
        self.assertFalse(Job.objects.filter(args__last=True).exists())

    def test_autocommit_insert_is_durable(self):
        self.assertTrue(connection.get_autocommit())
        job = NoopWorker.enqueue({"a": 1})
        self.assertTrue(connection.get_autocommit())
        self.assertFalse(connection.in_atomic_block)
        self.assertEqual(Job.objects.get(pk=job.pk).args, {"a": 1})

    def test_failed_batch_outside_a_transaction_writes_nothing(self):
        jobs = [NoopWorker.new({"i": i}) for i in range(3000)]
        jobs[-1].max_attempts = 0
        with self.assertRaises(integrity_errors()):
            django_jobs.insert_all(jobs)
        self.assertEqual(Job.objects.count(), 0)
        self.assertFalse(connection.in_atomic_block)


class DriverErrorTests(TestCase):
    def test_database_refusal_is_djangos_integrity_error(self):
        # Callers catch django.db.IntegrityError around inserts, as for any ORM write.
        jobs = [NoopWorker.new({"i": i}) for i in range(3)]
        jobs[1].priority = 12
        with self.assertRaises(IntegrityError):
            django_jobs.insert_all(jobs)

    def test_single_insert_refusal_is_djangos_integrity_error(self):
        job = NoopWorker.new({})
        job.priority = 12
        with self.assertRaises(integrity_errors()), transaction.atomic():
            django_jobs.insert(job)
        self.assertEqual(Job.objects.count(), 0)


class PublicNamesTests(TestCase):
    CODE = """
import django, types
django.setup()
import django_jobs
from tests.workers import NoopWorker
NoopWorker.enqueue           # any use that imports the insert module first
for name in sorted(django_jobs._LAZY):
    __import__(django_jobs._LAZY[name])
names = ("insert", "insert_all", "new_job")
print(" ".join(type(getattr(django_jobs, n)).__name__ for n in names))
"""

    def run_fresh(self, code):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**__import__("os").environ,
                                     "DJANGO_SETTINGS_MODULE": "tests.settings"},
                                cwd=str(__import__("pathlib").Path(__file__).parent.parent),
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.strip()

    def test_insert_all_and_new_job_are_functions(self):
        self.assertTrue(callable(django_jobs.insert_all))
        self.assertTrue(callable(django_jobs.new_job))
        self.assertEqual(django_jobs.insert_all.__name__, "insert_all")
        self.assertEqual(django_jobs.new_job.__name__, "new_job")

    def test_insert_is_the_function_whatever_the_import_order(self):
        # A submodule named like a public function (django_jobs/insert.py) would replace the
        # function on the package as soon as it is imported.
        self.assertEqual(self.run_fresh(self.CODE), "function function function")
