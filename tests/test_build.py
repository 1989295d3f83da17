"""Building jobs: ``Worker.new()`` and ``django_jobs.new_job()`` write nothing and catch every
mistake before an insert."""

import datetime
import decimal
import math
import random
import uuid
from unittest import mock

from django.test import SimpleTestCase, TestCase
from django.utils import timezone

import django_jobs
from django_jobs import (Cancel, ConfigurationError, Discard, InvalidJobError, Snooze,
                         UnknownOptionError, Worker, WorkerNotImportable)
from django_jobs.models import Job, JobState

from .workers import MailerWorker, NoopWorker, OptionsWorker, UniqueByEmailWorker, UniqueWorker

UTC = datetime.UTC


class ClassOptionsTests(SimpleTestCase):
    def test_class_options_are_inherited(self):
        job = OptionsWorker.new({"n": 1})
        self.assertEqual(job.queue, "reports")
        self.assertEqual(job.priority, 7)
        self.assertEqual(job.max_attempts, 5)
        self.assertEqual(job.tags, ["nightly"])
        self.assertEqual(job.worker, "tests.workers.OptionsWorker")
        self.assertEqual(job.args, {"n": 1})
        self.assertEqual(job.meta, {})
        self.assertEqual(job.attempt, 0)
        self.assertIsNone(job.pk)

    def test_defaults_of_the_base_class(self):
        job = NoopWorker.new()
        self.assertEqual((job.queue, job.priority, job.max_attempts, job.tags),
                         ("default", 0, 20, []))
        self.assertEqual(job.args, {})
        self.assertIsNone(job.unique_key)
        self.assertEqual(job.unique_states, 0)

    def test_per_job_options_override_class_options(self):
        job = OptionsWorker.new({}, queue="urgent", priority=1, max_attempts=2,
                                tags=["one-off"], meta={"by": "admin"})
        self.assertEqual((job.queue, job.priority, job.max_attempts, job.tags, job.meta),
                         ("urgent", 1, 2, ["one-off"], {"by": "admin"}))
        # The class is untouched: the next job gets the class options again.
        again = OptionsWorker.new({})
        self.assertEqual((again.queue, again.priority, again.tags), ("reports", 7, ["nightly"]))

    def test_subclass_inherits_and_overrides_parent_options(self):
        from . import workers

        # A subclass defined at module level of an importable module.
        self.assertTrue(issubclass(workers.MailerWorker, Worker))
        job = MailerWorker.new({"email": "a@example.com"}, priority=0)
        self.assertEqual(job.queue, "mailers")
        self.assertEqual(job.max_attempts, 3)
        self.assertEqual(job.priority, 0)

    def test_worker_path_is_the_dotted_path(self):
        self.assertEqual(MailerWorker.worker_path, "tests.workers.MailerWorker")

    def test_new_job_takes_a_class_or_a_dotted_path(self):
        by_class = django_jobs.new_job(MailerWorker, {"email": "x@example.com"}, priority=4)
        by_path = django_jobs.new_job("tests.workers.MailerWorker", {"email": "x@example.com"},
                                      priority=4)
        for job in (by_class, by_path):
            self.assertIsInstance(job, Job)
            self.assertEqual(job.worker, "tests.workers.MailerWorker")
            self.assertEqual(job.queue, "mailers")
            self.assertEqual(job.priority, 4)
            self.assertEqual(job.args, {"email": "x@example.com"})

    def test_unique_class_option_gives_a_key(self):
        a = UniqueWorker.new({"id": 1})
        b = UniqueWorker.new({"id": 1})
        c = UniqueWorker.new({"id": 2})
        self.assertRegex(a.unique_key, r"^[0-9a-f]{64}$")
        self.assertEqual(a.unique_key, b.unique_key)
        self.assertNotEqual(a.unique_key, c.unique_key)
        self.assertGreater(a.unique_states, 0)
        # Per job, unique can be switched off.
        self.assertIsNone(UniqueWorker.new({"id": 1}, unique=False).unique_key)
        self.assertIsNone(UniqueWorker.new({"id": 1}, unique=None).unique_key)
        # ... or switched on for a worker that is not unique.
        self.assertIsNotNone(NoopWorker.new({"id": 1}, unique=True).unique_key)

    def test_unique_key_ignores_dict_order(self):
        a = UniqueWorker.new({"a": 1, "b": {"x": 1, "y": 2}})
        b = UniqueWorker.new({"b": {"y": 2, "x": 1}, "a": 1})
        self.assertEqual(a.unique_key, b.unique_key)


class ScheduleTests(SimpleTestCase):
    def assertScheduledIn(self, job, seconds, *, before, after):
        self.assertEqual(job.state, JobState.SCHEDULED)
        self.assertGreaterEqual(job.scheduled_at, before + datetime.timedelta(seconds=seconds))
        self.assertLessEqual(job.scheduled_at, after + datetime.timedelta(seconds=seconds))

    def test_without_schedule_the_job_is_available_now(self):
        before = timezone.now()
        job = NoopWorker.new()
        after = timezone.now()
        self.assertEqual(job.state, JobState.AVAILABLE)
        self.assertTrue(before <= job.scheduled_at <= after)
        self.assertTrue(before <= job.inserted_at <= after)

    def test_schedule_in_forms(self):
        cases = [
            (30, 30),
            (2.5, 2.5),
            (datetime.timedelta(minutes=3), 180),
            ((2, "minutes"), 120),
            ((1, "minute"), 60),
            ((1.5, "hours"), 5400),
            ((2, "days"), 2 * 86400),
            ((1, "week"), 7 * 86400),
            ((45, "seconds"), 45),
        ]
        for value, seconds in cases:
            with self.subTest(schedule_in=value):
                before = timezone.now()
                job = NoopWorker.new({}, schedule_in=value)
                after = timezone.now()
                self.assertScheduledIn(job, seconds, before=before, after=after)

    def test_schedule_in_zero_is_available(self):
        self.assertEqual(NoopWorker.new({}, schedule_in=0).state, JobState.AVAILABLE)
        self.assertEqual(NoopWorker.new({}, schedule_in=(0, "minutes")).state,
                         JobState.AVAILABLE)

    def test_scheduled_at_in_the_future(self):
        at = timezone.now() + datetime.timedelta(hours=1)
        job = NoopWorker.new({}, scheduled_at=at)
        self.assertEqual(job.state, JobState.SCHEDULED)
        self.assertEqual(job.scheduled_at, at)

    def test_scheduled_at_in_another_time_zone(self):
        tz = datetime.timezone(datetime.timedelta(hours=5))
        at = (timezone.now() + datetime.timedelta(hours=1)).astimezone(tz)
        job = NoopWorker.new({}, scheduled_at=at)
        self.assertEqual(job.state, JobState.SCHEDULED)
        self.assertEqual(job.scheduled_at, at)

    def test_scheduled_at_in_the_past_is_available(self):
        at = timezone.now() - datetime.timedelta(minutes=5)
        job = NoopWorker.new({}, scheduled_at=at)
        self.assertEqual(job.state, JobState.AVAILABLE)
        self.assertEqual(job.scheduled_at, at)

    def test_schedule_errors(self):
        aware = timezone.now() + datetime.timedelta(minutes=1)
        cases = [
            ({"schedule_in": 10, "scheduled_at": aware}, "not both"),
            ({"scheduled_at": datetime.datetime(2030, 1, 1, 12, 0)}, "timezone-aware"),
            ({"scheduled_at": "2030-01-01T12:00:00Z"}, "must be a datetime"),
            ({"schedule_in": -1}, "0 or more"),
            ({"schedule_in": datetime.timedelta(seconds=-5)}, "0 or more"),
            ({"schedule_in": (-2, "minutes")}, "0 or more"),
            ({"schedule_in": math.nan}, "finite"),
            ({"schedule_in": math.inf}, "finite"),
            ({"schedule_in": (2, "fortnights")}, "unknown unit 'fortnights'"),
            ({"schedule_in": (2, "")}, "unknown unit"),
            ({"schedule_in": "10"}, "schedule_in must be"),
            ({"schedule_in": True}, "schedule_in must be"),
            ({"schedule_in": (2, "minutes", "extra")}, "schedule_in must be"),
            ({"schedule_in": ("2", "minutes")}, "schedule_in must be"),
        ]
        for options, message in cases:
            with self.subTest(options=options):
                with self.assertRaises(InvalidJobError) as ctx:
                    NoopWorker.new({}, **options)
                self.assertIn(message, str(ctx.exception))
                self.assertNotIsInstance(ctx.exception, UnknownOptionError)


class TagsTests(SimpleTestCase):
    def test_class_tags_trimmed_and_deduplicated(self):
        # MailerWorker declares ["email", " email ", "outbound"].
        self.assertEqual(MailerWorker.new({}).tags, ["email", "outbound"])

    def test_job_tags_trimmed_deduplicated_in_order(self):
        job = NoopWorker.new({}, tags=[" b ", "a", "b", "", "   ", "a ", "c"])
        self.assertEqual(job.tags, ["b", "a", "c"])
        self.assertEqual(NoopWorker.new({}, tags=("x", "y")).tags, ["x", "y"])
        self.assertEqual(NoopWorker.new({}, tags=[]).tags, [])

    def test_bad_tags(self):
        for tags in ("email", ["ok", 3], [None], 5, {"a": 1}):
            with self.subTest(tags=tags), self.assertRaises(InvalidJobError):
                NoopWorker.new({}, tags=tags)


class JSONRoundTripTests(SimpleTestCase):
    def test_args_hold_what_the_database_will_return(self):
        uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
        at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
        job = NoopWorker.new({
            "uuid": uid,
            "at": at,
            "day": datetime.date(2024, 5, 6),
            "amount": decimal.Decimal("12.50"),
            "pair": (1, 2),
            "nested": {"list": [1, (2, 3)], "none": None, "flag": True, "f": 1.5},
            7: "int key",
        })
        self.assertEqual(job.args, {
            "uuid": "12345678-1234-5678-1234-567812345678",
            "at": "2024-05-06T07:08:09.123Z",
            "day": "2024-05-06",
            "amount": "12.50",
            "pair": [1, 2],
            "nested": {"list": [1, [2, 3]], "none": None, "flag": True, "f": 1.5},
            "7": "int key",
        })

    def test_meta_round_trips_too(self):
        job = NoopWorker.new({}, meta={"trace": uuid.UUID(int=1), "t": (1,)})
        self.assertEqual(job.meta, {"trace": str(uuid.UUID(int=1)), "t": [1]})

    def test_args_are_copied_not_shared(self):
        args = {"items": [1, 2]}
        job = NoopWorker.new(args)
        args["items"].append(3)
        self.assertEqual(job.args, {"items": [1, 2]})

    def test_unserialisable_value_names_path_and_type(self):
        with self.assertRaises(InvalidJobError) as ctx:
            NoopWorker.new({"user": {1, 2}})
        message = str(ctx.exception)
        self.assertIn("args['user']", message)
        self.assertIn("set", message)

    def test_unserialisable_nested_value_names_full_path(self):
        with self.assertRaises(InvalidJobError) as ctx:
            NoopWorker.new({"user": {"tags": ["a", "b", object()]}})
        message = str(ctx.exception)
        self.assertIn("args['user']['tags'][2]", message)
        self.assertIn("object", message)

    def test_unserialisable_meta_names_meta(self):
        with self.assertRaises(InvalidJobError) as ctx:
            NoopWorker.new({}, meta={"when": b"bytes"})
        self.assertIn("meta['when']", str(ctx.exception))
        self.assertIn("bytes", str(ctx.exception))

    def test_non_string_key_is_reported(self):
        with self.assertRaises(InvalidJobError) as ctx:
            NoopWorker.new({"m": {(1, 2): "tuple key"}})
        self.assertIn("args['m']", str(ctx.exception))
        self.assertIn("tuple", str(ctx.exception))

    def test_nan_and_infinity_are_rejected(self):
        for value in (math.nan, math.inf, -math.inf):
            with self.subTest(value=value):
                with self.assertRaises(InvalidJobError) as ctx:
                    NoopWorker.new({"score": [1.0, value]})
                self.assertIn("args['score'][1]", str(ctx.exception))

    def test_args_must_be_a_dict(self):
        for args in ([1, 2], "text", 5, (("a", 1),)):
            with self.subTest(args=args):
                with self.assertRaises(InvalidJobError) as ctx:
                    NoopWorker.new(args)
                self.assertIn("args must be a dict", str(ctx.exception))

    def test_meta_must_be_a_dict(self):
        for meta in ([1], "x", 3):
            with self.subTest(meta=meta):
                with self.assertRaises(InvalidJobError) as ctx:
                    NoopWorker.new({}, meta=meta)
                self.assertIn("meta must be a dict", str(ctx.exception))

    def test_self_referencing_args_give_a_clear_error(self):
        args = {"a": 1}
        args["self"] = args
        with self.assertRaises(InvalidJobError):
            NoopWorker.new(args)
        loop = [1]
        loop.append(loop)
        with self.assertRaises(InvalidJobError):
            NoopWorker.new({"loop": loop})


class OptionErrorTests(SimpleTestCase):
    def assertInvalid(self, message, **options):
        with self.assertRaises(InvalidJobError) as ctx:
            NoopWorker.new({}, **options)
        self.assertIn(message, str(ctx.exception))
        return ctx.exception

    def test_priority_range(self):
        for priority in (0, 5, 9):
            self.assertEqual(NoopWorker.new({}, priority=priority).priority, priority)
        for priority in (-1, 10, 12, True, False, 1.0, "1", None):
            with self.subTest(priority=priority):
                self.assertInvalid("priority must be an integer from 0", priority=priority)

    def test_max_attempts(self):
        self.assertEqual(NoopWorker.new({}, max_attempts=1).max_attempts, 1)
        for value in (0, -3, True, 2.0, "3", None):
            with self.subTest(max_attempts=value):
                self.assertInvalid("max_attempts must be an integer",
                                   max_attempts=value)

    def test_queue(self):
        self.assertEqual(NoopWorker.new({}, queue="q" * 128).queue, "q" * 128)
        self.assertInvalid("non-empty", queue="")
        self.assertInvalid("non-empty", queue=" padded ")
        self.assertInvalid("non-empty", queue=None)
        self.assertInvalid("non-empty", queue=5)
        self.assertInvalid("129 characters", queue="q" * 129)

    def test_unknown_option_suggests_the_closest(self):
        with self.assertRaises(UnknownOptionError) as ctx:
            NoopWorker.new({}, priorty=3)
        exc = ctx.exception
        self.assertIsInstance(exc, TypeError)
        self.assertIsInstance(exc, InvalidJobError)
        self.assertIn("'priorty'", str(exc))
        self.assertIn("did you mean 'priority'?", str(exc))

        with self.assertRaises(UnknownOptionError) as ctx:
            django_jobs.new_job(NoopWorker, {}, schedule_at=timezone.now())
        self.assertIn("did you mean 'scheduled_at'?", str(ctx.exception))

        with self.assertRaises(UnknownOptionError) as ctx:
            NoopWorker.new({}, zzzz=1)
        self.assertNotIn("did you mean", str(ctx.exception))
        self.assertIn("valid:", str(ctx.exception))

    def test_unknown_unique_option_suggests_the_closest(self):
        with self.assertRaises(UnknownOptionError) as ctx:
            NoopWorker.new({}, unique={"perod": 60})
        self.assertIn("did you mean 'period'?", str(ctx.exception))

    def test_bad_unique_options(self):
        cases = [
            ({"fields": ["args", "colour"]}, "unknown name 'colour'"),
            ({"fields": []}, "at least one"),
            ({"fields": "args"}, "must be a list"),
            ({"states": "finished"}, "unknown unique state group 'finished'"),
            ({"states": ["available", "done"]}, "unknown name 'done'"),
            ({"states": []}, "must not be empty"),
            ({"timestamp": "attempted_at"}, "unique timestamp"),
            ({"period": -5}, "0 or more"),
            ({"period": "forever"}, "unique period must be"),
            ({"keys": ["id"], "fields": ["worker", "queue"]}, "need 'args' or 'meta'"),
            ({"keys": [1]}, "keys must be strings"),
        ]
        for unique, message in cases:
            with self.subTest(unique=unique):
                self.assertInvalid(message, unique=unique)
        self.assertInvalid("unique must be", unique="yes")
        self.assertInvalid("unique must be", unique=60)

    def test_bad_replace(self):
        self.assertInvalid("unknown name 'colour'", unique=True, replace=["colour"])
        self.assertInvalid("unknown state 'schduled'", unique=True,
                           replace={"schduled": ["args"]})

    def test_no_database_access(self):
        # SimpleTestCase refuses queries: building (and failing to build) never touches the DB.
        NoopWorker.new({"a": 1}, schedule_in=10)
        with self.assertRaises(InvalidJobError):
            NoopWorker.new({"x": {1}})


class WorkerImportTests(SimpleTestCase):
    def test_class_defined_in_a_function_is_not_importable(self):
        class LocalWorker(Worker):
            def perform(self, job):
                return None

        self.assertIn("<locals>", LocalWorker.worker_path)
        with self.assertRaises(WorkerNotImportable) as ctx:
            LocalWorker.new({})
        self.assertIn("module level", str(ctx.exception))
        self.assertIsInstance(ctx.exception, InvalidJobError)
        with self.assertRaises(WorkerNotImportable):
            django_jobs.new_job(LocalWorker, {})

    def test_class_shadowing_another_path_is_not_importable(self):
        # A class claiming to be tests.workers.NoopWorker while another object has that path.
        impostor = type("NoopWorker", (Worker,), {"__module__": "tests.workers"})
        self.assertEqual(impostor.worker_path, "tests.workers.NoopWorker")
        with self.assertRaises(WorkerNotImportable) as ctx:
            impostor.new({})
        self.assertIn("another object", str(ctx.exception))

    def test_missing_paths(self):
        for path in ("tests.workers.DoesNotExist", "tests.no_such_module.Worker",
                     "no_such_package.workers.Worker"):
            with self.subTest(path=path):
                with self.assertRaises(WorkerNotImportable) as ctx:
                    django_jobs.new_job(path, {})
                self.assertIn("cannot be imported", str(ctx.exception))
                self.assertIn(path, str(ctx.exception))

    def test_not_a_dotted_path(self):
        for value in ("NoopWorker", "", 42, None, NoopWorker()):
            with self.subTest(value=value), self.assertRaises(WorkerNotImportable):
                django_jobs.new_job(value, {})

    def test_path_to_something_that_is_not_a_worker(self):
        for path in ("tests.workers.NotAWorker", "tests.workers.Worker.new", "django_jobs.Job"):
            with self.subTest(path=path):
                with self.assertRaises(WorkerNotImportable):
                    django_jobs.new_job(path, {})
        with self.assertRaises(WorkerNotImportable) as ctx:
            django_jobs.new_job("tests.workers.NotAWorker", {})
        self.assertIn("not a django_jobs.Worker subclass", str(ctx.exception))

    def test_a_plain_class_is_rejected(self):
        from .workers import NotAWorker

        with self.assertRaises(WorkerNotImportable):
            django_jobs.new_job(NotAWorker, {})


class ClassOptionValidationTests(SimpleTestCase):
    """Bad class options fail when the class statement runs, naming the class."""

    def assertBadClass(self, message, **attrs):
        with self.assertRaises(ConfigurationError) as ctx:
            type("BadWorker", (Worker,), {"__module__": __name__, **attrs})
        self.assertIn(f"{__name__}.BadWorker", str(ctx.exception))
        self.assertIn(message, str(ctx.exception))

    def test_bad_class_options(self):
        self.assertBadClass("priority", priority=12)
        self.assertBadClass("priority", priority=True)
        self.assertBadClass("max_attempts", max_attempts=0)
        self.assertBadClass("queue", queue="")
        self.assertBadClass("128", queue="x" * 200)
        self.assertBadClass("tags", tags="email")
        self.assertBadClass("did you mean 'period'", unique={"perod": 60})
        self.assertBadClass("unique states", unique={"states": ["avail"]})
        self.assertBadClass("replace fields", unique=True, replace=["nope"])

    def test_class_statement_raises(self):
        with self.assertRaises(ConfigurationError):
            class BadPriority(Worker):
                priority = 12

    def test_configuration_error_is_improperly_configured(self):
        from django.core.exceptions import ImproperlyConfigured

        with self.assertRaises(ImproperlyConfigured):
            type("BadWorker", (Worker,), {"__module__": __name__, "max_attempts": -1})


class BackoffTests(SimpleTestCase):
    def test_default_backoff_is_exponential_with_up_to_ten_percent_jitter(self):
        worker = NoopWorker()
        for attempt in range(1, 12):
            base = 15 + 2 ** attempt
            job = Job(attempt=attempt)
            values = [worker.backoff(job) for _ in range(200)]
            with self.subTest(attempt=attempt):
                self.assertTrue(all(base <= v <= base * 1.1 for v in values), values[:5])
                # Jittered: not every retry lands on the same second.
                self.assertGreater(len(set(values)), 1)

    def test_backoff_bounds_with_fixed_random(self):
        job = Job(attempt=3)
        with mock.patch.object(random, "uniform", side_effect=lambda a, b: a):
            self.assertEqual(NoopWorker().backoff(job), 23)
        with mock.patch.object(random, "uniform", side_effect=lambda a, b: b):
            self.assertAlmostEqual(NoopWorker().backoff(job), 23 * 1.1)

    def test_backoff_stays_finite_for_huge_attempts(self):
        value = NoopWorker().backoff(Job(attempt=1000))
        self.assertTrue(math.isfinite(value))
        self.assertLessEqual(value, (15 + 2 ** 20) * 1.1)

    def test_default_timeout_is_none(self):
        self.assertIsNone(NoopWorker().timeout(Job()))

    def test_perform_must_be_implemented(self):
        with self.assertRaises(NotImplementedError):
            Worker().perform(Job())


class ResultTypesTests(SimpleTestCase):
    def test_snooze(self):
        self.assertEqual(Snooze(30).seconds, 30)
        self.assertEqual(Snooze(2.5).seconds, 2.5)
        self.assertEqual(Snooze((2, "minutes")).seconds, 120)
        self.assertEqual(Snooze((1, "hour")).seconds, 3600)
        self.assertEqual(Snooze(datetime.timedelta(minutes=1, seconds=5)).seconds, 65)
        self.assertEqual(Snooze(0).seconds, 0)
        self.assertEqual(Snooze(60), Snooze((1, "minute")))

    def test_snooze_is_immutable(self):
        import dataclasses

        with self.assertRaises(dataclasses.FrozenInstanceError):
            Snooze(1).seconds = 5

    def test_bad_snooze(self):
        for value in (-1, (1, "fortnight"), "30", None, math.inf, True):
            with self.subTest(value=value):
                with self.assertRaises(InvalidJobError) as ctx:
                    Snooze(value)
                self.assertIn("Snooze", str(ctx.exception))

    def test_cancel_and_discard(self):
        self.assertIsNone(Cancel().reason)
        self.assertEqual(Cancel("no longer needed").reason, "no longer needed")
        self.assertEqual(Cancel(reason="x"), Cancel("x"))
        self.assertIsNone(Discard().reason)
        self.assertEqual(Discard("bad input").reason, "bad input")
        self.assertNotEqual(Cancel("x"), Discard("x"))


class BuiltJobsAreNotSavedTests(TestCase):
    def test_new_runs_no_query(self):
        with self.assertNumQueries(0):
            NoopWorker.new({"a": 1}, schedule_in=10)
            django_jobs.new_job("tests.workers.UniqueWorker", {"a": 1})
            with self.assertRaises(InvalidJobError):
                NoopWorker.new({"x": {1}})

    def test_new_does_not_insert(self):
        NoopWorker.new({"a": 1})
        UniqueByEmailWorker.new({"email": "a@example.com"})
        django_jobs.new_job("tests.workers.MailerWorker", {"email": "b@example.com"})
        self.assertEqual(Job.objects.count(), 0)
