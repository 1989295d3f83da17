"""Structured args (django_jobs.pro.structured): a worker's ``class Args:`` schema.

Validation when a job is built (``new()``, ``enqueue()``, ``new_job()``, ``insert_all()``):
every field type, valid and invalid, required fields (None and "" count as missing), defaults
stored, nested paths, every error at once, unknown keys refused, nothing written when any job
of a batch is invalid. The cast before ``perform`` (enums, UUIDs, datetimes, dates, decimals,
terms, nested objects with attribute access), in inline mode, ``perform_job``,
``drain_queue`` and a real ``runjobs`` child; a stored row that no longer fits the schema
fails that attempt with ``ArgsMismatch`` while the node goes on running other jobs.

The workers are in tests/pro_workers.py (BusinessWorker has one field of each type).
"""

import datetime
import decimal
import logging
import unittest
import uuid

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, TestCase, TransactionTestCase
from django.urls import reverse

from django_jobs import fetch_recorded, insert_all, new_job
from django_jobs.exceptions import ConfigurationError
from django_jobs.models import Job
from django_jobs.pro import structured as s
from django_jobs.pro.recorded import NotRecorded
from django_jobs.pro.structured import ArgsMismatch, ArgsObject, Schema
from django_jobs.testing import drain_queue, perform_job, with_testing_mode

from .helpers import describe_jobs, reload
from .pro_workers import (QUEUE, TYPED_FIELDS, BusinessWorker, Mode, definition_error)
from .processes import RunjobsMixin
from .waits import wait_until

UTC = datetime.UTC
PLUS_2 = datetime.timezone(datetime.timedelta(hours=2))
REF = uuid.UUID("6f1c3f3e-2b9e-4d35-9b43-0c4b8d2a9e10")
AT = datetime.datetime(2026, 1, 5, 9, 30, 15, tzinfo=PLUS_2)

#: Every field given, several in a form the schema converts (strings for numbers and dates,
#: an Enum member, a UUID object).
FULL = {
    "id": "12",
    "name": "Acme <b>",
    "ratio": "2.5",
    "active": "false",
    "extra": {"a": [1, None], "b": {"c": "d"}},
    "mode": "paused",
    "kind": Mode.DISABLED,
    "ref": REF,
    "at": AT,
    "day": "2026-01-05",
    "amount": decimal.Decimal("12.50"),
    "tags": ["red", "blue"],
    "office": {"office_id": "7", "floors": [1, "2"]},
    "owners": [{"name": "Ada", "share": "0.5"}, {"name": "Bob"}],
    "blob": (1, {2, 3}, b"\x00x", decimal.Decimal("1.10")),
}

#: What is stored for FULL: plain JSON.
FULL_STORED = {
    "id": 12,
    "name": "Acme <b>",
    "ratio": 2.5,
    "active": False,
    "extra": {"a": [1, None], "b": {"c": "d"}},
    "mode": "paused",
    "kind": "disabled",
    "ref": str(REF),
    "at": "2026-01-05T09:30:15+02:00",
    "day": "2026-01-05",
    "amount": "12.50",
    "tags": ["red", "blue"],
    "office": {"office_id": 7, "floors": [1, 2]},
    "owners": [{"name": "Ada", "share": "0.5"}, {"name": "Bob", "share": "1"}],
    "blob": {"__term__": ["tuple", [1, {"__term__": ["set", [2, 3]]},
                                    {"__term__": ["bytes", "AHg="]},
                                    {"__term__": ["decimal", "1.10"]}]]},
}

MINIMAL = {"id": 1, "name": "Solo"}
#: Defaults are stored with the job.
MINIMAL_STORED = {"id": 1, "name": "Solo", "active": True, "mode": "enabled"}

#: Stored args that no longer fit BusinessWorker.Args (written to the column directly), and
#: what the error must name.
MISFITS = {
    "enum value gone": ({**MINIMAL_STORED, "mode": "archived"},
                        'mode: "archived" is not one of enabled, disabled, paused'),
    "type changed": ({**MINIMAL_STORED, "id": "abc"}, 'id: "abc" is not an integer'),
    "field removed": ({**MINIMAL_STORED, "legacy": 1}, "legacy: not a field of"),
    "nested required": ({**MINIMAL_STORED, "office": {"floors": [1]}},
                        "office.office_id: this field is required"),
    "list item": ({**MINIMAL_STORED, "tags": ["ok", 5]}, "tags[1]: 5 is not a string"),
    "many item": ({**MINIMAL_STORED, "owners": [{"name": "A", "share": "1"}, {"share": "1"}]},
                  "owners[1].name: this field is required"),
    "required gone": ({"name": "x", "active": True, "mode": "enabled"},
                      "id: this field is required"),
}


def errors_of(args) -> list[str]:
    """The messages of the ValidationError ``BusinessWorker.new(args)`` raises."""
    try:
        BusinessWorker.new(args)
    except ValidationError as exc:
        return exc.messages
    raise AssertionError(f"BusinessWorker.new({args!r}) raised no ValidationError")


class FieldValidationTests(SimpleTestCase):
    """``new()`` validates and converts every field; nothing here touches the database."""

    def test_valid_args_are_stored_as_plain_json(self):
        self.assertEqual(BusinessWorker.new(FULL).args, FULL_STORED)

    def test_defaults_are_stored(self):
        self.assertEqual(BusinessWorker.new(MINIMAL).args, MINIMAL_STORED)
        # None and "" count as missing: the default is stored instead.
        self.assertEqual(BusinessWorker.new({**MINIMAL, "mode": None, "active": ""}).args,
                         MINIMAL_STORED)
        # A nested default too (Owner.share).
        self.assertEqual(BusinessWorker.new({**MINIMAL, "owners": [{"name": "A"}]})
                         .args["owners"], [{"name": "A", "share": "1"}])

    def test_required_fields_none_and_empty_string_count_as_missing(self):
        for missing in ({}, {"id": None, "name": ""}, {"id": "", "name": None}):
            with self.subTest(missing=missing):
                self.assertEqual(sorted(errors_of(missing)),
                                 ["id: this field is required",
                                  "name: this field is required"])

    def test_optional_fields_left_out_are_not_stored(self):
        self.assertEqual(BusinessWorker.new({**MINIMAL, "ratio": None, "tags": "",
                                             "office": None}).args, MINIMAL_STORED)

    def test_each_field_type_accepts_valid_values(self):
        cases = {
            "id": [(5, 5), ("5", 5), (10 ** 12, 10 ** 12)],
            "ratio": [(1, 1.0), (-2.5, -2.5), ("1e3", 1000.0), ("0.1", 0.1)],
            "active": [(True, True), (False, False), ("true", True), ("false", False)],
            "extra": [({}, None), ({"k": [1, {"x": None}]}, {"k": [1, {"x": None}]})],
            "mode": [("enabled", "enabled"), ("disabled", "disabled")],
            "kind": [(Mode.ENABLED, "enabled"), ("disabled", "disabled"),
                     ("DISABLED", "disabled")],
            "ref": [(REF, str(REF)), (str(REF).upper(), str(REF)), (REF.hex, str(REF))],
            "at": [(datetime.datetime(2026, 1, 5, tzinfo=UTC), "2026-01-05T00:00:00+00:00"),
                   ("2026-01-05T10:00:00+01:00", "2026-01-05T10:00:00+01:00"),
                   ("2026-01-05T10:00:00Z", "2026-01-05T10:00:00+00:00")],
            "day": [(datetime.date(2026, 2, 28), "2026-02-28"), ("2024-02-29", "2024-02-29")],
            "amount": [(decimal.Decimal("0.10"), "0.10"), ("1e2", "1E+2"), (3, "3"),
                       (0.5, "0.5"), ("-7.000", "-7.000")],
            "tags": [([], []), (("a", "b"), ["a", "b"])],
            "office": [({"office_id": 1}, {"office_id": 1}),
                       ({"office_id": 2, "floors": []}, {"office_id": 2, "floors": []})],
            "owners": [([], []), ([{"name": "A", "share": 2}], [{"name": "A", "share": "2"}])],
            "blob": [(7, 7), ([1, "x"], [1, "x"]), ({"k": None}, {"k": None}),
                     (datetime.date(2026, 1, 1), {"__term__": ["date", "2026-01-01"]})],
        }
        for name, values in cases.items():
            for given, stored in values:
                with self.subTest(field=name, value=given):
                    args = BusinessWorker.new({**MINIMAL, name: given}).args
                    if stored is None:  # an empty dict counts as given
                        self.assertEqual(args[name], given)
                    else:
                        self.assertEqual(args[name], stored)

    def test_each_field_type_refuses_invalid_values_naming_the_field(self):
        cases = {
            "id": [(0, "id: 0 is not a valid id (a positive integer)"),
                   (-3, "id: -3 is not a valid id (a positive integer)"),
                   ("abc", 'id: "abc" is not an integer'),
                   (True, "id: True is not an integer"),
                   (1.5, "id: 1.5 is not an integer"),
                   ([1], "id: [1] is not an integer")],
            "name": [(5, "name: 5 is not a string"), (["x"], "name: ['x'] is not a string")],
            "ratio": [("x", 'ratio: "x" is not a finite number'),
                      (float("nan"), "ratio: nan is not a finite number"),
                      ("inf", 'ratio: "inf" is not a finite number'),
                      (True, "ratio: True is not a number"),
                      ([1.0], "ratio: [1.0] is not a finite number")],
            "active": [("yes", 'active: "yes" is not a boolean'),
                       (1, "active: 1 is not a boolean"),
                       (0, "active: 0 is not a boolean")],
            "extra": [([1], "extra: [1] is not a dict"), ("x", 'extra: "x" is not a dict'),
                      ({"x": object()}, "extra: ")],
            "mode": [("unknown", 'mode: "unknown" is not one of enabled, disabled, paused'),
                     ("ENABLED", 'mode: "ENABLED" is not one of enabled, disabled, paused'),
                     (1, "mode: 1 is not one of enabled, disabled, paused")],
            "kind": [("on", 'kind: "on" is not one of enabled, disabled'),
                     (True, "kind: True is not one of enabled, disabled")],
            "ref": [("nope", 'ref: "nope" is not a UUID'), (12, "ref: 12 is not a UUID")],
            "at": [(datetime.datetime(2026, 1, 5),
                    'at: "2026-01-05T00:00:00" has no time zone'),
                   ("2026-01-05T10:00:00", 'at: "2026-01-05T10:00:00" has no time zone'),
                   ("yesterday", 'at: "yesterday" is not an ISO 8601 datetime'),
                   (datetime.date(2026, 1, 5), "at: datetime.date(2026, 1, 5) is not a "
                                               "datetime"),
                   (1700000000, "at: 1700000000 is not a datetime")],
            "day": [(datetime.datetime(2026, 1, 5, tzinfo=UTC),
                     "day: datetime.datetime(2026, 1, 5, 0, 0, tzinfo=datetime.timezone.utc) "
                     "is a datetime, not a date"),
                    ("2026-02-30", 'day: "2026-02-30" is not an ISO 8601 date'),
                    (5, "day: 5 is not a date")],
            "amount": [("abc", 'amount: "abc" is not a finite decimal'),
                       ("NaN", 'amount: "NaN" is not a finite decimal'),
                       (float("inf"), "amount: inf is not a finite decimal"),
                       (True, "amount: True is not a decimal"),
                       ([1], "amount: [1] is not a finite decimal")],
            "tags": [("red", 'tags: "red" is not a list'),
                     (["a", 5], "tags[1]: 5 is not a string"),
                     ({"a": 1}, "tags: {'a': 1} is not a list")],
            "office": [({}, "office.office_id: this field is required"),
                       ({"office_id": 0}, "office.office_id: 0 is not a valid id"),
                       ({"office_id": 1, "floors": [1, "x"]},
                        'office.floors[1]: "x" is not an integer'),
                       ({"office_id": 1, "wing": "B"}, "office.wing: unknown field (fields: "
                                                       "office_id, floors)")],
            "owners": [("x", 'owners: "x" is not a list'),
                       ([{"name": "A"}, {}], "owners[1].name: this field is required"),
                       ([{"name": 5}], "owners[0].name: 5 is not a string"),
                       ([{"name": "A", "share": "lots"}],
                        'owners[0].share: "lots" is not a finite decimal')],
            "blob": [(object(), "blob: a object cannot be stored as a term"),
                     ([1, object()], "blob: ")],  # and the item's place, below
        }
        for name, values in cases.items():
            for given, message in values:
                with self.subTest(field=name, value=given):
                    errors = errors_of({**MINIMAL, name: given})
                    self.assertEqual(len(errors), 1, errors)
                    self.assertTrue(errors[0].startswith(message), errors)

    def test_a_term_names_the_place_of_the_bad_item(self):
        (error,) = errors_of({**MINIMAL, "blob": {"k": [1, object()]}})
        self.assertTrue(error.startswith("blob: "), error)
        self.assertIn("k[1]: a object cannot be stored as a term", error)

    def test_every_error_at_once_with_its_path(self):
        args = {"id": 0, "name": 5, "ratio": "x", "active": "yes", "extra": [1],
                "mode": "unknown", "kind": "on", "ref": "nope",
                "at": datetime.datetime(2026, 1, 1), "day": "2026-02-30", "amount": "abc",
                "tags": ["a", 5], "office": {"floors": [1, "x"], "wing": 1},
                "owners": [{"name": "A"}, {}], "blob": object(), "colour": "red"}
        with self.assertRaises(ValidationError) as caught:
            BusinessWorker.new(args)
        paths = [error.params["path"] for error in caught.exception.error_list]
        self.assertEqual(sorted(paths), sorted([
            "colour", "id", "name", "ratio", "active", "extra", "mode", "kind", "ref", "at",
            "day", "amount", "tags[1]", "office.wing", "office.office_id", "office.floors[1]",
            "owners[1].name", "blob"]))
        for error in caught.exception.error_list:
            self.assertTrue(error.message.startswith(error.params["path"] + ": "), error)
        codes = {error.params["path"]: error.code for error in caught.exception.error_list}
        self.assertEqual((codes["colour"], codes["office.wing"], codes["office.office_id"],
                          codes["mode"], codes["id"]),
                         ("unknown", "unknown", "required", "invalid_choice", "invalid"))

    def test_unknown_keys_are_refused(self):
        self.assertEqual(errors_of({**MINIMAL, "colour": "red", "size": 2}), [
            f"{key}: unknown field (fields: {', '.join(TYPED_FIELDS)})"
            for key in ("colour", "size")])
        self.assertEqual(errors_of({**MINIMAL, "office": {"office_id": 1, "x": 1}}),
                         ["office.x: unknown field (fields: office_id, floors)"])
        self.assertEqual(errors_of({**MINIMAL, "owners": [{"name": "A", "x": 1}]}),
                         ["owners[0].x: unknown field (fields: name, share)"])

    def test_args_that_are_not_a_dict_are_refused(self):
        for args in (["id", 1], "id=1", 5):
            with self.subTest(args=args):
                self.assertEqual(len(errors_of(args)), 1)
                self.assertIn("is not an object", errors_of(args)[0])

    def test_new_job_by_path_validates_too(self):
        with self.assertRaises(ValidationError):
            new_job("tests.pro_workers.BusinessWorker", {"id": "x", "name": "n"})
        job = new_job("tests.pro_workers.BusinessWorker", MINIMAL)
        self.assertEqual(job.args, MINIMAL_STORED)

    def test_a_nested_value_that_is_not_an_object_is_named_by_its_path(self):
        self.assertEqual(errors_of({**MINIMAL, "office": 5}), ["office: 5 is not an object"])
        self.assertEqual(errors_of({**MINIMAL, "owners": [{"name": "A"}, "B"]}),
                         ['owners[1]: "B" is not an object'])

    def test_a_bad_value_with_a_percent_sign_is_reported(self):
        self.assertEqual(errors_of({**MINIMAL, "id": "50%"}), ['id: "50%" is not an integer'])
        self.assertEqual(errors_of({**MINIMAL, "a%d": 1})[0][:20], "a%d: unknown field (")

    def test_malformed_integer_strings_are_validation_errors(self):
        for value in ("--5", "²", "-"):
            with self.subTest(value=value):
                self.assertEqual(len(errors_of({**MINIMAL, "id": value})), 1)

    def test_an_integer_too_large_for_a_float_is_a_validation_error(self):
        self.assertEqual(errors_of({**MINIMAL, "ratio": 10 ** 400}),
                         ["ratio: " + repr(10 ** 400) + " is not a finite number"])


class SchemaTests(SimpleTestCase):
    """Schemas outside workers: enums of integers and of Python Enums, configuration errors,
    and the typed ArgsObject."""

    def test_enum_of_integers(self):
        class Levels:
            level = s.Enum([1, 2, 3], required=True)

        schema = Schema.of(Levels)
        self.assertEqual(schema.dump({"level": 2}), {"level": 2})
        for bad in ("2", True, 4, None):
            with self.subTest(value=bad), self.assertRaises(ValidationError):
                schema.dump({"level": bad})
        self.assertEqual(schema.load({"level": 3}).level, 3)

    def test_enum_of_a_python_enum_gives_members(self):
        class Switch:
            mode = s.Enum(Mode, default=Mode.ENABLED)

        schema = Schema.of(Switch)
        self.assertEqual(schema.dump({}), {"mode": "enabled"})
        self.assertEqual(schema.dump({"mode": "DISABLED"}), {"mode": "disabled"})
        self.assertIs(schema.load({"mode": "disabled"}).mode, Mode.DISABLED)

    def test_configuration_errors(self):
        with self.assertRaisesMessage(ConfigurationError, "Enum needs at least one value"):
            s.Enum([])
        with self.assertRaisesMessage(ConfigurationError, "List needs a field"):
            s.List(int)

        class BadDefault:
            count = s.Int(default="many")

        with self.assertRaisesMessage(ConfigurationError, 'BadDefault.count: default "many"'):
            Schema.of(BadDefault)

        class Empty:
            pass

        with self.assertRaisesMessage(ConfigurationError, "declares no fields"):
            Schema.of(Empty)

    def test_a_worker_with_a_bad_schema_fails_at_class_definition(self):
        class NoFields:
            pass

        message = definition_error("NoFieldsWorker", {"Args": NoFields})
        self.assertIn("NoFieldsWorker", message)
        self.assertIn("declares no fields", message)

    def test_args_object(self):
        class Inner:
            z = s.Int()

        class Point:
            x = s.Int(required=True)
            y = s.Int()
            label = s.Str()
            office = s.One(Inner)

        loaded = Schema.of(Point).load({"x": 1, "office": {"z": 3}})
        self.assertIsInstance(loaded, ArgsObject)
        self.assertEqual((loaded.x, loaded["x"], loaded.y, loaded.label), (1, 1, None, None))
        self.assertIn("x", loaded)
        self.assertEqual(loaded.office.z, 3)
        self.assertEqual(loaded.to_dict(), {"x": 1, "y": None, "label": None,
                                            "office": {"z": 3}})
        self.assertEqual(loaded, Schema.of(Point).load({"x": 1, "office": {"z": 3}}))
        with self.assertRaisesMessage(AttributeError, "args have no field 'nope'"):
            loaded.nope  # noqa: B018
        self.assertIn("x=1", repr(loaded))


def check_cast(test: unittest.TestCase, result: dict) -> None:
    """What BusinessWorker.perform returned for FULL: every field cast to its Python type."""
    test.assertEqual(result["types"], {
        "id": "int", "name": "str", "ratio": "float", "active": "bool", "extra": "dict",
        "mode": "str", "kind": "Mode", "ref": "UUID", "at": "datetime", "day": "date",
        "amount": "Decimal", "tags": "list", "office": "ArgsObject", "owners": "list",
        "blob": "tuple"})
    test.assertEqual((result["id"], result["mode"], result["kind"], result["kind_is_member"]),
                     (12, "paused", "disabled", True))
    test.assertEqual(result["ratio"], 2.5)
    test.assertEqual(result["ref"], REF)
    test.assertEqual(result["at"], AT)
    test.assertEqual(result["at"].utcoffset(), datetime.timedelta(hours=2))
    test.assertEqual(result["day"], datetime.date(2026, 1, 5))
    test.assertEqual(str(result["amount"]), "12.50")
    test.assertEqual(result["tags"], ["red", "blue"])
    test.assertEqual(result["extra"], {"a": [1, None], "b": {"c": "d"}})
    test.assertEqual((result["office_id"], result["floors"]), (7, [1, 2]))
    test.assertEqual(result["owners"], [("Ada", decimal.Decimal("0.5")),
                                        ("Bob", decimal.Decimal("1"))])
    test.assertEqual(result["blob"], (1, {2, 3}, b"\x00x", decimal.Decimal("1.10")))


def assert_misfit_failed(test, job, stored, message) -> None:
    """``job``, whose stored args were replaced by ``stored``, failed its one attempt with an
    ArgsMismatch naming ``message``, without running perform, its args left as they were."""
    test.assertEqual((job.state, job.attempt, len(job.errors)), ("retryable", 1, 1))
    error = job.errors[0]["error"]
    test.assertIn(f"ArgsMismatch: the stored args of job {job.pk} no longer fit "
                  f"BusinessWorker.Args: ", error)
    test.assertIn(message, error)
    test.assertEqual(job.args, stored)
    with test.assertRaises(NotRecorded):  # perform never ran
        fetch_recorded(job)


class QuietFailures:
    """Failed attempts log a warning each; keep the test output quiet."""

    def setUp(self):
        super().setUp()
        logger = logging.getLogger("django_jobs.executor")
        level = logger.level
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, level)


class BuildAndRunTests(QuietFailures, TestCase):
    """Validation at enqueue and insert_all, and the cast in perform_job, inline mode and
    drain_queue, on this run's database."""

    def test_enqueue_validates_and_writes_nothing_when_invalid(self):
        with self.assertRaises(ValidationError) as caught:
            BusinessWorker.enqueue({"id": "x", "name": "", "office": {}})
        self.assertEqual(sorted(caught.exception.messages), [
            'id: "x" is not an integer', "name: this field is required",
            "office.office_id: this field is required"])
        self.assertEqual(Job.objects.count(), 0)

    def test_enqueue_writes_the_stored_form(self):
        job = BusinessWorker.enqueue(FULL)
        self.assertEqual(reload(job).args, FULL_STORED)
        self.assertEqual(job.args, FULL_STORED)

    def test_insert_all_writes_nothing_when_any_job_is_invalid(self):
        with self.assertRaises(ValidationError) as caught:
            insert_all([BusinessWorker.new(FULL), BusinessWorker.new(MINIMAL),
                        BusinessWorker.new({**MINIMAL, "tags": ["a", 1]}),
                        BusinessWorker.new(MINIMAL)])
        self.assertEqual(caught.exception.messages, ["tags[1]: 1 is not a string"])
        self.assertEqual(Job.objects.count(), 0, "nothing is written")
        jobs = insert_all([BusinessWorker.new(FULL), BusinessWorker.new(MINIMAL)])
        self.assertEqual([reload(job).args for job in jobs], [FULL_STORED, MINIMAL_STORED])

    def test_perform_job_casts_every_field(self):
        check_cast(self, perform_job(BusinessWorker, FULL))
        minimal = perform_job(BusinessWorker, MINIMAL)
        self.assertEqual((minimal["mode"], minimal["kind"], minimal["office_id"],
                          minimal["owners"], minimal["blob"]),
                         ("enabled", None, None, [], None))

    def test_perform_job_refuses_invalid_args(self):
        with self.assertRaises(ValidationError):
            perform_job(BusinessWorker, {**MINIMAL, "mode": "x"})

    def test_perform_job_of_a_stored_job_that_no_longer_fits_raises_args_mismatch(self):
        job = BusinessWorker.enqueue(MINIMAL)
        Job.objects.filter(pk=job.pk).update(args={**MINIMAL_STORED, "mode": "archived"})
        with self.assertRaises(ArgsMismatch) as caught:
            perform_job(reload(job))
        self.assertIn(f"the stored args of job {job.pk} no longer fit BusinessWorker.Args",
                      str(caught.exception))
        self.assertIn('mode: "archived" is not one of', str(caught.exception))

    @with_testing_mode("inline")
    def test_inline_mode_casts_and_records(self):
        job = BusinessWorker.enqueue(FULL)
        self.assertEqual(job.state, "completed", job.errors)
        check_cast(self, job.result)
        check_cast(self, fetch_recorded(job))
        # perform saw typed args; the job keeps the stored form.
        self.assertEqual(job.args, FULL_STORED)
        self.assertEqual(Job.objects.count(), 0)
        with self.assertRaises(ValidationError):
            BusinessWorker.enqueue({**MINIMAL, "kind": "on"})

    def test_drain_queue_casts_and_fails_only_the_rows_that_no_longer_fit(self):
        full = BusinessWorker.enqueue(FULL)
        minimal = BusinessWorker.enqueue(MINIMAL)
        misfits = {}
        for name, (stored, _message) in MISFITS.items():
            job = BusinessWorker.enqueue(MINIMAL)
            Job.objects.filter(pk=job.pk).update(args=stored)
            misfits[name] = job
        self.assertEqual(drain_queue(QUEUE), {"completed": 2, "failed": len(MISFITS),
                                              "discarded": 0, "cancelled": 0, "snoozed": 0})
        check_cast(self, fetch_recorded(reload(full)))
        self.assertEqual(fetch_recorded(reload(minimal))["mode"], "enabled")
        for name, job in misfits.items():
            with self.subTest(name):
                assert_misfit_failed(self, reload(job), *MISFITS[name])

    def test_a_stored_decimal_or_uuid_that_no_longer_parses_is_named(self):
        for stored, expected in (
                ({**MINIMAL_STORED, "owners": [{"name": "A", "share": "lots"}]},
                 'owners[0].share: "lots"'),
                ({**MINIMAL_STORED, "ref": "not-a-uuid"}, 'ref: "not-a-uuid"')):
            job = BusinessWorker.enqueue(MINIMAL)
            Job.objects.filter(pk=job.pk).update(args=stored)
            with self.subTest(expected), self.assertRaises(ArgsMismatch) as caught:
                perform_job(reload(job))
            self.assertIn(expected, str(caught.exception))

    def test_a_float_field_reaches_perform_as_a_float_from_the_database(self):
        job = BusinessWorker.enqueue({**MINIMAL, "ratio": 1e16})
        drain_queue(QUEUE)
        result = fetch_recorded(reload(job))
        self.assertEqual(result["types"]["ratio"], "float")


class AdminTests(TestCase):
    """What is stored is plain JSON: the admin lists it and its search finds it."""

    def test_stored_args_are_listed_and_searchable(self):
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
        paused = BusinessWorker.enqueue(FULL)
        BusinessWorker.enqueue(MINIMAL)
        url = reverse("admin:django_jobs_job_changelist")
        response = self.client.get(url, {"q": "args.mode:paused"})
        self.assertEqual([job.pk for job in response.context["cl"].result_list], [paused.pk])
        self.assertContains(response, "&quot;kind&quot;: &quot;disabled&quot;")
        response = self.client.get(url, {"q": "args.office.office_id:7"})
        self.assertEqual([job.pk for job in response.context["cl"].result_list], [paused.pk])


class RunjobsTests(QuietFailures, RunjobsMixin, TransactionTestCase):
    """A real ``runjobs`` child casts the args of structured jobs; rows that no longer fit
    fail their attempt, and the node goes on running other jobs."""

    def test_runjobs_casts_and_fails_only_the_rows_that_no_longer_fit(self):
        full = BusinessWorker.enqueue(FULL)
        minimal = BusinessWorker.enqueue(MINIMAL)
        misfits = {}
        for name, (stored, _message) in MISFITS.items():
            job = BusinessWorker.enqueue(MINIMAL)
            Job.objects.filter(pk=job.pk).update(args=stored)
            misfits[name] = job
        node = self.start_runjobs("structured", "--queue", f"{QUEUE}=3")
        ids = [full.pk, minimal.pk, *(job.pk for job in misfits.values())]
        jobs = Job.objects.filter(pk__in=ids)

        def settled():
            return jobs.filter(state__in=["completed", "retryable"]).count() == len(ids)

        wait_until(settled, 30, what="the structured jobs to complete or fail",
                   describe=lambda: self.runjobs_report(describe_jobs(jobs)))
        # The node survived the misfits: a job inserted afterwards runs too.
        late = BusinessWorker.enqueue({**MINIMAL, "name": "late"})
        wait_until(lambda: reload(late).state == "completed", 30,
                   what="a job inserted after the failures to complete",
                   describe=lambda: self.runjobs_report(describe_jobs()))
        self.assertTrue(node.alive(), self.runjobs_report("the node died"))
        self.stop_runjobs(node, within=30)

        check_cast(self, fetch_recorded(reload(full)))
        self.assertEqual(fetch_recorded(reload(minimal))["types"]["office"], "NoneType")
        for name, job in misfits.items():
            with self.subTest(name):
                assert_misfit_failed(self, reload(job), *MISFITS[name])
