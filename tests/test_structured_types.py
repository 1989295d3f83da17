"""Structured args: times (``Time``), binary data (``Bytes``, base64 in JSON) and naive
datetimes (refused, naming the field).

Validation when a job is built (valid and invalid values, every error named by its path), the
stored JSON, the cast back before ``perform`` (``perform_job`` and a real ``runjobs`` child:
insert -> runjobs -> perform receives the typed value), and stored values that no longer parse.
The worker is tests.pro_workers.MomentWorker.
"""

import datetime
import logging

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, TransactionTestCase
from django.utils import timezone

from django_jobs import fetch_recorded
from django_jobs.models import Job
from django_jobs.pro import structured as s
from django_jobs.pro.structured import ArgsMismatch
from django_jobs.testing import perform_job

from .helpers import describe_jobs, reload
from .pro_workers import QUEUE, MomentWorker
from .processes import RunjobsMixin
from .waits import wait_until

PLUS_2 = datetime.timezone(datetime.timedelta(hours=2))
WHEN = datetime.datetime(2026, 1, 5, 9, 30, tzinfo=PLUS_2)
#: Every field given (a time as text, an aware time, bytes with every byte value).
FULL = {"opens": "08:15", "closes": datetime.time(18, 0, 30, tzinfo=PLUS_2),
        "payload": bytes(range(256)), "when": WHEN,
        "slots": [datetime.time(9), "12:30:15.250000"]}
FULL_STORED = {"opens": "08:15:00", "closes": "18:00:30+02:00",
               "payload": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDE"
                          "yMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2R"
                          "lZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpe"
                          "YmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycr"
                          "LzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3"
                          "+/w==",
               "when": "2026-01-05T09:30:00+02:00", "slots": ["09:00:00", "12:30:15.250000"]}


def errors_of(args) -> list[str]:
    try:
        MomentWorker.new(args)
    except ValidationError as exc:
        return exc.messages
    raise AssertionError(f"MomentWorker.new({args!r}) raised no ValidationError")


def check_typed(test, result) -> None:
    """What MomentWorker.perform saw for FULL: typed values."""
    test.assertEqual(result["types"], {"opens": "time", "closes": "time", "payload": "bytes",
                                       "when": "datetime", "slots": "list"})
    test.assertEqual(result["opens"], datetime.time(8, 15))
    test.assertEqual(result["closes"], datetime.time(18, 0, 30, tzinfo=PLUS_2))
    test.assertEqual(result["closes"].utcoffset(), datetime.timedelta(hours=2))
    test.assertEqual(result["payload"], bytes(range(256)))
    test.assertEqual(result["when"], WHEN)
    test.assertEqual(result["slots"], [datetime.time(9), datetime.time(12, 30, 15, 250000)])


class ValidationTests(SimpleTestCase):
    def test_valid_values_are_stored_as_json_text(self):
        self.assertEqual(MomentWorker.new(FULL).args, FULL_STORED)
        for value in (bytearray(b"\x00\xff"), memoryview(b"\x00\xff"), b"\x00\xff"):
            with self.subTest(type=type(value).__name__):
                self.assertEqual(MomentWorker.new({"opens": "08:00", "payload": value})
                                 .args["payload"], "AP8=")
        self.assertEqual(MomentWorker.new({"opens": "08:00", "payload": b""}).args,
                         {"opens": "08:00:00", "payload": ""})

    def test_invalid_values_are_named_all_at_once(self):
        messages = errors_of({"opens": "25:00", "closes": 815, "payload": "text",
                              "slots": ["09:00", datetime.datetime(2026, 1, 1, 9), "x"]})
        self.assertEqual(sorted(messages), [
            'closes: 815 is not a time',
            'opens: "25:00" is not an ISO 8601 time',
            'payload: "text" is not bytes (encode the string first, e.g. value.encode())',
            "slots[1]: datetime.datetime(2026, 1, 1, 9, 0) is not a time",
            'slots[2]: "x" is not an ISO 8601 time'])
        self.assertEqual(errors_of({"opens": "08:00", "payload": [1, 2]}),
                         ["payload: [1, 2] is not bytes"])
        self.assertEqual(errors_of({"closes": "08:00"}), ["opens: this field is required"])

    def test_naive_datetimes_are_refused_naming_the_field(self):
        hint = ("has no time zone: give an aware datetime (django.utils.timezone.make_aware("
                "value)) or an ISO 8601 string with an offset")
        for value, shown in ((datetime.datetime(2026, 1, 5, 9, 30), "2026-01-05T09:30:00"),
                             ("2026-01-05T09:30", "2026-01-05T09:30:00")):
            with self.subTest(value=value), self.assertRaises(ValidationError) as caught:
                MomentWorker.new({"opens": "08:00", "when": value})
            self.assertEqual(caught.exception.messages, [f'when: "{shown}" {hint}'])
            self.assertEqual(caught.exception.error_list[0].code, "naive")
        # Made aware, it is accepted (in the current time zone, as make_aware does).
        aware = timezone.make_aware(datetime.datetime(2026, 1, 5, 9, 30))
        self.assertEqual(MomentWorker.new({"opens": "08:00", "when": aware}).args["when"],
                         aware.isoformat())

    def test_defaults_are_checked_at_class_definition(self):
        with self.assertRaisesMessage(Exception, "default \"x\": \"x\" is not an ISO 8601 time"):
            s.Schema.of(type("Bad", (), {"at": s.Time(default="x")}))
        with self.assertRaisesMessage(Exception, "is not bytes"):
            s.Schema.of(type("Bad2", (), {"data": s.Bytes(default="x")}))
        schema = s.Schema.of(type("Good", (), {"data": s.Bytes(default=b"\x01"),
                                               "at": s.Time(default=datetime.time(7))}))
        self.assertEqual(schema.dump({}), {"data": "AQ==", "at": "07:00:00"})


class CastTests(SimpleTestCase):
    def test_perform_job_receives_typed_values(self):
        check_typed(self, perform_job(MomentWorker, FULL))
        minimal = perform_job(MomentWorker, {"opens": "08:00"})
        self.assertEqual((minimal["payload"], minimal["closes"], minimal["slots"]),
                         (None, None, None))

    def test_stored_values_that_no_longer_parse_are_named(self):
        for stored, message in (({"opens": "08:00:00", "payload": "not base64!"},
                                 'payload: "not base64!" is not base64 text'),
                                ({"opens": "08:00:00", "payload": 12},
                                 "payload: 12 is not base64 text"),
                                ({"opens": "8 o'clock"}, "opens: \"8 o'clock\" is not a stored "
                                                         "time"),
                                ({"opens": "08:00"}, 'opens: "08:00" is not a stored time')):
            with self.subTest(stored=stored), self.assertRaises(ArgsMismatch) as caught:
                perform_job(Job(worker=MomentWorker.worker_path, args=stored, queue=QUEUE))
            self.assertIn(message, str(caught.exception))


class RunjobsTests(RunjobsMixin, TransactionTestCase):
    """insert -> a real runjobs child -> perform receives the typed values."""

    def test_runjobs_casts_times_bytes_and_datetimes(self):
        logger = logging.getLogger("django_jobs.executor")  # the broken job's warning
        self.addCleanup(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
        full = MomentWorker.enqueue(FULL)
        broken = MomentWorker.enqueue({"opens": "08:00"})
        Job.objects.filter(pk=broken.pk).update(args={"opens": "08:00:00", "payload": "%%"})
        self.assertEqual(reload(full).args, FULL_STORED)
        node = self.start_runjobs("moments", "--queue", f"{QUEUE}=2")
        jobs = Job.objects.filter(pk__in=[full.pk, broken.pk])
        wait_until(lambda: reload(full).state == "completed"
                   and reload(broken).state == "retryable", 60,
                   what="the typed job to complete and the broken one to fail",
                   describe=lambda: self.runjobs_report(describe_jobs(jobs)))
        self.assertTrue(node.alive(), self.runjobs_report("the node died"))
        self.stop_runjobs(node, within=30)
        check_typed(self, fetch_recorded(reload(full)))
        self.assertIn('payload: "%%" is not base64 text', reload(broken).errors[0]["error"])
