"""Fuzzed input (hypothesis): args and meta of every JSON shape and hostile values through
``Worker.new`` / ``enqueue`` / ``insert_all``, structured args, cron expressions and time
zones, and ``DJANGO_JOBS`` settings through the system checks.

Each input gets a clear error (InvalidJobError, ValidationError, CronError, a check Error) or
a correct job: the row reads back as the job built in memory, and ``drain_queue`` runs it to a
normal outcome with the args the job was built with. Examples are fixed (see tests/fuzz.py).
"""

from __future__ import annotations

import datetime
import json
from zoneinfo import ZoneInfo

from django.core import checks
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import SimpleTestCase, override_settings
from hypothesis import example, given, strategies as st
from hypothesis.extra.django import TestCase

from django_jobs import insert_all
from django_jobs.checks import check_aliases, check_encryption, check_settings
from django_jobs.conf import DEFAULTS, jobs_settings
from django_jobs.crontab import CronError, parse, timezone_named
from django_jobs.exceptions import InvalidJobError
from django_jobs.models import Job, JobState
from django_jobs.testing import drain_queue

from . import fuzz_workers
from .fuzz import (HOSTILE_NUMBERS, HOSTILE_STRINGS, LONGEST_INTEGERS, fuzz_settings,
                   hostile_text, json_objects, json_values, nested, numbers, refusals, scalars)
from .fuzz_workers import QUEUE, EchoWorker, TypedWorker

ALL_DONE = {"completed": 1, "failed": 0, "discarded": 0, "cancelled": 0, "snoozed": 0}


def canonical(value: object) -> str:
    """A value's JSON, keys sorted: equal for equal values of equal types (1 is not 1.0)."""
    return json.dumps(value, sort_keys=True)


class ArgsAndMetaTests(TestCase):
    """Each example runs in its own transaction, rolled back after it (hypothesis' TestCase)."""

    def build(self, how: str, args: object, meta: object) -> Job:
        """Build and insert a job the way ``how`` names; return it as built (with its id)."""
        if how == "enqueue":
            return EchoWorker.enqueue(args, meta=meta)
        job = EchoWorker.new(args, meta=meta)
        with transaction.atomic():
            if how == "insert_all with another":
                return insert_all([EchoWorker.new({"other": True}), job])[1]
            return insert_all([job])[0]

    def check_accepted(self, job: Job) -> None:
        row = Job.objects.get(pk=job.pk)
        self.assertEqual(canonical(row.args), canonical(job.args))
        self.assertEqual(canonical(row.meta), canonical(job.meta))
        fuzz_workers.SEEN.clear()
        counts = drain_queue(QUEUE)
        self.assertEqual(counts["failed"] + counts["discarded"], 0, Job.objects.get(
            pk=job.pk).errors)
        row = Job.objects.get(pk=job.pk)
        self.assertEqual(row.state, JobState.COMPLETED)
        [seen] = [args for args, meta in fuzz_workers.SEEN if canonical(args) == canonical(
            job.args) and canonical(meta) == canonical(job.meta)][:1] or [None]
        self.assertIsNotNone(seen, f"perform saw {fuzz_workers.SEEN!r}, not {job.args!r}")

    @fuzz_settings(150)
    @given(args=json_objects(), meta=json_objects(3),
           how=st.sampled_from(["new + insert_all", "enqueue", "insert_all with another"]))
    @example(args={"n": 1.2345678901234567e25, "big": 10**400}, meta={}, how="enqueue")
    @example(args={"text": "\\u0000 is not NUL", "emoji": "\ud83d\ude00"}, meta={},
             how="enqueue")
    @example(args={"deep": nested(100)}, meta={}, how="enqueue")
    @example(args={"deep": nested(101)}, meta={}, how="enqueue")
    @example(args={"k\ud800": 1}, meta={}, how="enqueue")
    @example(args={}, meta={"m": "\udfff"}, how="insert_all with another")
    def test_args_and_meta_are_refused_clearly_or_run_as_given(self, args, meta, how):
        expected = refusals(args) | refusals(meta)
        try:
            job = self.build(how, args, meta)
        except InvalidJobError as exc:
            self.assertTrue(expected, f"refused {args!r} / {meta!r}: {exc}")
            self.assertTrue(any(word in str(exc) for word in expected), (expected, str(exc)))
            self.assertFalse(Job.objects.filter(worker=EchoWorker.worker_path).exists())
            return
        self.assertFalse(expected, f"accepted {args!r} / {meta!r}, which holds {expected}")
        self.check_accepted(job)

    @fuzz_settings(60)
    @given(args=st.one_of(json_values(), st.sampled_from([(), [("a", 1)], "{}", b"{}"])),
           meta=st.one_of(json_values(), st.sampled_from([(), "{}"])))
    def test_args_and_meta_that_are_not_objects_are_refused(self, args, meta):
        if isinstance(args, dict) and isinstance(meta, dict):
            return  # the test above
        if args is None and isinstance(meta, dict):
            return  # no args: {}
        with self.assertRaisesRegex(InvalidJobError, r"(args|meta) must be a dict"):
            EchoWorker.new(args, meta=meta)

    def test_values_nested_past_the_recursion_limit_are_refused(self):
        # Not hypothesis examples: hypothesis cannot print such values.
        for depth in (990, 1000, 5000, 100_000):
            with self.subTest(depth=depth), self.assertRaisesMessage(
                    InvalidJobError, "args nests too deeply; the limit is 100 levels"):
                EchoWorker.enqueue({"deep": nested(depth)})
            with self.subTest(depth=depth), self.assertRaisesMessage(
                    InvalidJobError, "meta nests too deeply"):
                EchoWorker.new({}, meta={"deep": nested(depth)})
        self.assertFalse(Job.objects.exists())

    def test_meta_keys_that_fill_columns_must_fit_them(self):
        # chain_id and batch_id are copied into 64-character columns (PostgreSQL refused the
        # row at insert with a DataError before build checked them).
        for meta in ({"batch_id": "b" * 65}, {"chain_id": "c" * 65}, {"batch_id": 7},
                     {"chain_id": {"nested": "id"}}, {"batch_id": ["x"]}):
            with self.subTest(meta=meta), self.assertRaisesRegex(
                    InvalidJobError, r"meta\['(batch|chain)_id'\] must be a string of at most "
                                     r"64 characters"):
                EchoWorker.enqueue({}, meta=meta)
        job = EchoWorker.enqueue({}, meta={"batch_id": "b" * 64, "chain_id": None})
        self.check_accepted(job)

    def test_durations_past_what_a_datetime_holds_are_refused(self):
        # OverflowError from float() or timedelta before.
        for schedule_in in (10**400, (10**400, "days"), 1e300, 86400 * 366 * 9000):
            with self.subTest(schedule_in=str(schedule_in)[:20]), self.assertRaisesRegex(
                    InvalidJobError, "schedule_in (must be a finite|is too far)"):
                EchoWorker.new({}, schedule_in=schedule_in)

    def test_hostile_strings_and_numbers_each_alone(self):
        for value in [*HOSTILE_STRINGS, *HOSTILE_NUMBERS, *LONGEST_INTEGERS]:
            shown = ("a 4300-digit integer" if value is LONGEST_INTEGERS[0] else "10**4300"
                     if value is LONGEST_INTEGERS[1] else repr(value)[:40])
            with self.subTest(value=shown):
                expected = refusals(value)
                try:
                    job = EchoWorker.enqueue({"v": value, value if isinstance(value, str)
                                              else "k": 1})
                except InvalidJobError as exc:
                    self.assertTrue(any(word in str(exc) for word in expected), str(exc))
                    continue
                self.assertFalse(expected, repr(value))
                self.check_accepted(job)
                Job.objects.all().delete()


#: Values each structured field type takes, and junk it must refuse with a ValidationError.
FIELD_VALUES = {
    "id": st.one_of(st.integers(), st.sampled_from(["7", "x", 2**70, 1.5, True])),
    "name": hostile_text,
    "ratio": st.one_of(st.floats(), st.integers(), st.sampled_from(["1.5", "nan"])),
    "active": st.one_of(st.booleans(), st.sampled_from([0, 1, "true", "yes"])),
    "extra": json_objects(3),
    "mode": st.sampled_from(["on", "off", "ON", "", None, 1]),
    "ref": st.one_of(st.uuids(), st.uuids().map(str), hostile_text),
    "at": st.one_of(st.datetimes(timezones=st.just(datetime.UTC)), st.datetimes(),
                    st.datetimes().map(datetime.datetime.isoformat), hostile_text),
    "day": st.one_of(st.dates(), st.dates().map(datetime.date.isoformat), hostile_text),
    "amount": st.one_of(st.decimals(), st.decimals().map(str), numbers),
    "tags": st.one_of(st.lists(hostile_text, max_size=3), hostile_text),
    "line": st.one_of(st.fixed_dictionaries({"sku": hostile_text},
                                            optional={"quantity": scalars}), scalars),
    "lines": st.one_of(st.lists(st.fixed_dictionaries({"sku": hostile_text}), max_size=3),
                       st.lists(scalars, max_size=2)),
    "blob": st.one_of(json_values(6), st.tuples(st.integers(), hostile_text),
                      st.frozensets(st.integers(), max_size=3), st.binary(max_size=8)),
    "unknown": scalars,
}


class StructuredArgsTests(TestCase):
    @fuzz_settings(150)
    @given(st.fixed_dictionaries({}, optional=FIELD_VALUES))
    def test_structured_args_are_refused_clearly_or_run_typed(self, args):
        try:
            job = TypedWorker.enqueue(args)
        except ValidationError as exc:
            self.assertTrue(exc.messages)
            self.assertTrue(all(":" in message for message in exc.messages), exc.messages)
            return
        except InvalidJobError as exc:  # what JSON cannot hold at all (NUL, surrogates)
            self.assertTrue(refusals(args) or "nests" in str(exc), str(exc))
            return
        self.assertIn("id", args)  # required
        fuzz_workers.SEEN.clear()
        self.assertEqual(drain_queue(QUEUE), ALL_DONE, Job.objects.get(pk=job.pk).errors)
        [(seen, _)] = fuzz_workers.SEEN
        self.assertEqual(seen["id"], int(args["id"]))


#: Characters cron expressions are made of, and some that are not.
CRON_TEXT = st.lists(st.sampled_from([
    *"0123456789*/-, ", "MON", "sun", "JAN", "dec", "@", "daily", "reboot", "L", "W", "#",
    "?", "²", "٣", "\x00", "\t", "\n", "\u00a0", "99999999999999999999"]), max_size=30).map("".join)


class CronFuzzTests(SimpleTestCase):
    NOW = datetime.datetime(2026, 3, 29, 0, 30, tzinfo=datetime.UTC)

    @fuzz_settings(400)
    @given(st.one_of(CRON_TEXT, st.text(max_size=20),
                     st.lists(st.sampled_from(["*", "*/0", "1-", "-1", "60", "1-5/2", "²",
                                               "٣", "7", "SUN-MON", "MON-SUN", "0-7", "*/99",
                                               "5/", "/5", "1,,2", "2-1"]),
                              min_size=5, max_size=5).map(" ".join)))
    @example("² * * * *")
    @example("*/² * * * *")
    @example("٣ * * * *")
    def test_any_expression_parses_or_names_its_error(self, text):
        try:
            expression = parse(text)
        except CronError as exc:
            self.assertTrue(str(exc))
            return
        if expression.reboot:
            return
        for zone in ("UTC", "Europe/Paris"):
            after = self.NOW
            for _ in range(3):
                later = expression.next_run(after, ZoneInfo(zone))
                if later is None:
                    break
                self.assertGreater(later, after)
                self.assertTrue(expression.matches(later.astimezone(ZoneInfo(zone))))
                after = later

    @fuzz_settings(200)
    @given(st.one_of(st.text(max_size=30), st.sampled_from(
        ["../../etc/passwd", "/etc/localtime", "UTC\x00", "Europe/../UTC", "", ".", "Europe/",
         "europe/paris", "Etc/GMT+99", None, 5, b"UTC", ["UTC"]])))
    def test_any_time_zone_is_a_zone_or_a_cron_error(self, name):
        try:
            zone = timezone_named(name)
        except CronError as exc:
            self.assertIn("time zone", str(exc))
            return
        self.assertIsInstance(zone, ZoneInfo)


#: Values a DJANGO_JOBS key may be given: what it takes, and what it must refuse.
SETTING_VALUES = st.one_of(scalars, st.lists(scalars, max_size=3),
                           st.dictionaries(hostile_text, scalars, max_size=3))
SETTINGS_SHAPES = {
    "DATABASE": st.one_of(st.just("default"), SETTING_VALUES),
    "QUEUES": st.one_of(st.dictionaries(hostile_text, st.one_of(st.integers(-2, 50),
                                                                 scalars), max_size=3),
                        SETTING_VALUES),
    "NODE": st.one_of(st.none(), hostile_text, SETTING_VALUES),
    "PROCESSES": st.one_of(st.integers(-2, 64), st.just("auto"), SETTING_VALUES),
    "PROCESS_POOL": st.one_of(st.fixed_dictionaries({}, optional={
        "size": st.one_of(st.none(), st.integers(-1, 8), scalars),
        "max_jobs": st.one_of(st.integers(-1, 200), scalars),
        "other": scalars}), SETTING_VALUES),
    "GRACE_PERIOD": st.one_of(st.floats(), st.integers(), SETTING_VALUES),
    "RESCUE_AFTER": st.one_of(st.floats(), st.integers(), SETTING_VALUES),
    "PRUNER": st.one_of(st.fixed_dictionaries({}, optional={
        "max_age": numbers, "limit": numbers, "other": scalars}), SETTING_VALUES),
    "CRONTAB": st.one_of(
        st.lists(st.tuples(st.one_of(CRON_TEXT, scalars),
                           st.sampled_from(["tests.fuzz_workers.EchoWorker", "no.such.Worker",
                                            "tests.broken_worker_module.Invoice", "", 5]),
                           st.dictionaries(st.sampled_from(
                               ["args", "timezone", "name", "catch_up", "queue", "priority",
                                "tags", "meta", "bogus"]), st.one_of(scalars, json_objects(2)),
                               max_size=3)).map(lambda t: t if t[2] else t[:2]),
                 max_size=3),
        SETTING_VALUES),
    "ENCRYPTION_KEYS": st.one_of(st.lists(st.one_of(
        st.just("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), st.binary(max_size=40),
        hostile_text, scalars), max_size=3), SETTING_VALUES),
    "TESTING": st.one_of(st.sampled_from([None, "inline", "manual"]), SETTING_VALUES),
    "UNKNOWN_KEY": SETTING_VALUES,
    5: SETTING_VALUES,
}
JOBS_CHECKS = (check_settings, check_aliases, check_encryption)


class SettingsFuzzTests(SimpleTestCase):
    @fuzz_settings(200)
    @given(st.one_of(st.fixed_dictionaries({}, optional=SETTINGS_SHAPES), SETTING_VALUES))
    def test_any_setting_gets_check_messages_never_an_exception(self, value):
        with override_settings(DJANGO_JOBS=value):
            try:
                messages = [m for check in JOBS_CHECKS for m in check()]
            finally:
                jobs_settings.reload()
        for message in messages:
            self.assertIsInstance(message, checks.CheckMessage)
            self.assertTrue(message.id and message.id.startswith("django_jobs."), message)
            self.assertTrue(message.msg)
        if not isinstance(value, dict):
            self.assertIn("django_jobs.E001", [m.id for m in messages])
        elif set(value) - set(DEFAULTS):
            self.assertIn("django_jobs.E002", [m.id for m in messages])
