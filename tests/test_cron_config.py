"""Configuring cron: CRONTAB and its system check (E009), the CronEntry model, the admin's
add and change forms, and ``manage.py jobs cron``."""

import datetime
import io

from django.contrib.auth.models import User
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import IntegrityError, transaction
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from django_jobs.checks import check_settings
from django_jobs.exceptions import ConfigurationError, InvalidJobError
from django_jobs.models import CronEntry, CronSource
from django_jobs.plugins.cron import MAX_CATCH_UP, parse_crontab, validate_entry
from django_jobs.crontab import CronError

UTC = datetime.UTC
W = "tests.cron_workers.CronWorker"
REPORT = "tests.cron_workers.ReportWorker"
ENTRY_HINT = ("Entries are (expression, worker_path) or (expression, worker_path, options); "
              "see docs/cron.md.")


def at(*args):
    return datetime.datetime(*args, tzinfo=UTC)


class ParseCrontabTests(SimpleTestCase):
    def test_two_and_three_item_entries(self):
        entries = parse_crontab([
            ("0  * * * *", W),
            ["@daily", REPORT, {"args": {"a": 1}, "queue": "q", "priority": 1,
                                "max_attempts": 2, "tags": ["t"], "meta": {"m": 1},
                                "timezone": "Europe/Paris", "name": "nightly",
                                "catch_up": 3600}],
        ])
        self.assertEqual(entries, [
            {"name": W, "expression": "0 * * * *", "worker": W, "args": {}, "options": {},
             "timezone": "", "catch_up": 0},
            {"name": "nightly", "expression": "@daily", "worker": REPORT, "args": {"a": 1},
             "options": {"queue": "q", "priority": 1, "max_attempts": 2, "tags": ["t"],
                         "meta": {"m": 1}},
             "timezone": "Europe/Paris", "catch_up": 3600},
        ])
        self.assertEqual(parse_crontab([]), [])
        self.assertEqual(parse_crontab(()), [])

    def test_errors_name_the_entry_and_the_problem(self):
        cases = [
            ([("60 * * * *", W)],
             f"CRONTAB[0] ('60 * * * *', '{W}'): minute field 60 is out of range 0..59"),
            ([("* * * * *", W), ("* * 1-40 * *", REPORT)],
             f"CRONTAB[1] ('* * 1-40 * *', '{REPORT}'): day-of-month field 40 is out of "
             f"range 1..31"),
            ([("* * * * *", "tests.cron_workers.Nope")],
             "CRONTAB[0] ('* * * * *', 'tests.cron_workers.Nope'): worker "
             "tests.cron_workers.Nope cannot be imported: Module \"tests.cron_workers\" does "
             "not define a \"Nope\" attribute/class"),
            ([("* * * * *", "tests.workers.NotAWorker")],
             "CRONTAB[0] ('* * * * *', 'tests.workers.NotAWorker'): "
             "tests.workers.NotAWorker is not a django_jobs.Worker subclass"),
            ([("* * * * *", W, {"queu": "q"})],
             f"CRONTAB[0] ('* * * * *', '{W}'): unknown cron option 'queu', did you mean "
             f"'queue'? (valid: args, timezone, name, catch_up, queue, priority, "
             f"max_attempts, tags, meta)"),
            ([("* * * * *", W, {"unique": True})],
             f"CRONTAB[0] ('* * * * *', '{W}'): unknown cron option 'unique' (valid: args, "
             f"timezone, name, catch_up, queue, priority, max_attempts, tags, meta)"),
            ([("* * * * *", W, {"priority": 12})],
             f"CRONTAB[0] ('* * * * *', '{W}'): priority must be an integer from 0 "
             f"(highest) to 9, not 12"),
            ([("* * * * *", W, {"timezone": "Mars/Olympus"})],
             f"CRONTAB[0] ('* * * * *', '{W}'): unknown time zone 'Mars/Olympus'; use an "
             f"IANA name such as 'Europe/Paris'"),
            ([("* * * * *", W, {"catch_up": MAX_CATCH_UP + 1})],
             f"CRONTAB[0] ('* * * * *', '{W}'): catch_up must be whole seconds from 0 to "
             f"604800 (7 days), not 604801"),
            ([("* * * * *", W, {"args": [1, 2]})],
             f"CRONTAB[0] ('* * * * *', '{W}'): cron args must be a dict, not [1, 2]"),
            ([("* * * * *", W), ("@hourly", W)],
             f"CRONTAB[1]: two CRONTAB entries are named '{W}'; give each entry of one "
             f"worker a 'name' option"),
            ([("* * * * *",)],
             "CRONTAB[0] must be (expression, worker_path) or (expression, worker_path, "
             "options), not ('* * * * *',)"),
            ("* * * * *", "CRONTAB must be a list of entries, not '* * * * *'"),
        ]
        for crontab, message in cases:
            with self.subTest(crontab=crontab):
                with self.assertRaises(ConfigurationError) as caught:
                    parse_crontab(crontab)
                self.assertEqual(str(caught.exception), message)

    def test_catch_up_must_be_whole_seconds(self):
        for value in (-1, 1.5, True, "60", MAX_CATCH_UP + 1):
            with self.subTest(value=value), self.assertRaises(ConfigurationError):
                parse_crontab([("* * * * *", W, {"catch_up": value})])
        parse_crontab([("* * * * *", W, {"catch_up": MAX_CATCH_UP})])

    def test_validate_entry(self):
        validate_entry("*/5 * * * *", W, {"a": 1}, {"queue": "q"}, "Europe/Paris", 60)
        with self.assertRaisesMessage(CronError, "hour field 24 is out of range 0..23"):
            validate_entry("0 24 * * *", W, {}, {}, "UTC", 0)
        with self.assertRaisesMessage(InvalidJobError, "cron args must be JSON"):
            validate_entry("@daily", W, {"when": {1, 2}}, {}, "UTC", 0)


class CheckTests(SimpleTestCase):
    def check(self, crontab):
        with override_settings(DJANGO_JOBS={"CRONTAB": crontab}):
            return check_settings()

    def test_valid_crontab_passes(self):
        self.assertEqual(self.check([("@reboot", W), ("*/15 9-17 * * MON-FRI", REPORT,
                                                      {"timezone": "Europe/Paris"})]), [])

    def test_each_kind_of_mistake_is_e009(self):
        cases = {
            "bad expression": ([("0 9 * * MON-FRY", W)],
                               "day-of-week field value 'FRY' is not a number or a name"),
            "out of range": ([("0 24 * * *", W)], "hour field 24 is out of range 0..23"),
            "unknown worker": ([("@daily", "myapp.workers.Gone")],
                               "worker myapp.workers.Gone cannot be imported"),
            "unknown option": ([("@daily", W, {"priorty": 1})],
                               "unknown cron option 'priorty', did you mean 'priority'?"),
            "bad time zone": ([("@daily", W, {"timezone": "Paris"})],
                              "unknown time zone 'Paris'"),
            "duplicate": ([("@daily", W), ("@hourly", W)], "two CRONTAB entries are named"),
            "not a list": ({"@daily": W}, "CRONTAB must be a list of entries"),
        }
        for case, (crontab, text) in cases.items():
            with self.subTest(case):
                [error] = self.check(crontab)
                self.assertIsInstance(error, checks.Error)
                self.assertEqual(error.id, "django_jobs.E009")
                self.assertTrue(error.msg.startswith("DJANGO_JOBS['CRONTAB'] is invalid: "),
                                error.msg)
                self.assertIn(text, error.msg)
                self.assertEqual(error.hint, ENTRY_HINT)

    def test_manage_py_check_stops_on_e009(self):
        with override_settings(DJANGO_JOBS={"CRONTAB": [("60 * * * *", W)]}):
            with self.assertRaises(SystemCheckError) as caught:
                call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
        self.assertIn("django_jobs.E009", str(caught.exception))
        self.assertIn("minute field 60 is out of range 0..59", str(caught.exception))

    def test_options_that_are_not_a_dict_are_e009(self):
        for options in ("queue", None, 5, ["queue", "q"]):
            with self.subTest(options=options):
                [error] = self.check([("@daily", W, options)])
                self.assertEqual(error.id, "django_jobs.E009")
                self.assertIn(f"CRONTAB[0]: options must be a dict, not {options!r}",
                              error.msg)


class CronEntryModelTests(TestCase):
    def entry(self, **fields):
        values = {"name": "report", "expression": "0 9 * * MON-FRI", "worker": W,
                  "timezone": "Europe/Paris"}
        return CronEntry(**{**values, **fields})

    def test_defaults(self):
        entry = self.entry()
        entry.save()
        entry.refresh_from_db()
        self.assertEqual((entry.args, entry.options, entry.catch_up, entry.paused,
                          entry.source, entry.last_slot_at),
                         ({}, {}, 0, False, CronSource.DATABASE, None))
        self.assertLess(timezone.now() - entry.created_at, datetime.timedelta(seconds=10))
        self.assertEqual(str(entry), f"report: 0 9 * * MON-FRI {W}")

    def test_next_run_in_the_entry_time_zone(self):
        entry = self.entry()
        self.assertEqual(entry.next_run(at(2025, 1, 4)), at(2025, 1, 6, 8))   # CET
        self.assertEqual(entry.next_run(at(2025, 7, 5)), at(2025, 7, 7, 7))   # CEST
        self.assertGreater(entry.next_run(), timezone.now())
        self.assertIsNone(self.entry(expression="@reboot").next_run())
        self.assertIsNone(self.entry(expression="0 0 30 2 *").next_run())

    def test_clean_validates_everything(self):
        self.entry().full_clean()
        self.entry(expression="@reboot", options={"queue": "q", "meta": {"a": 1}},
                   catch_up=MAX_CATCH_UP).full_clean()
        cases = {
            "expression": ({"expression": "0 9 * * 8"},
                           "day-of-week field 8 is out of range 0..7"),
            "worker": ({"worker": "tests.cron_workers.Nope"},
                       "worker tests.cron_workers.Nope cannot be imported"),
            "timezone": ({"timezone": "Europe/Pariss"}, "unknown time zone 'Europe/Pariss'"),
            "args": ({"args": ["x"]}, "cron args must be a dict, not ['x']"),
            "options": ({"options": {"schedule_in": 5}}, "unknown cron option 'schedule_in'"),
            "option value": ({"options": {"queue": ""}}, "queue"),
            "catch_up": ({"catch_up": MAX_CATCH_UP + 1},
                         "catch_up must be whole seconds from 0 to 604800 (7 days)"),
        }
        for case, (fields, message) in cases.items():
            with self.subTest(case), self.assertRaises(ValidationError) as caught:
                self.entry(**fields).full_clean()
            self.assertIn(message, " ".join(caught.exception.messages))

    def test_names_are_unique(self):
        self.entry().save()
        with self.assertRaises(ValidationError) as caught:
            self.entry().full_clean()
        self.assertIn("name", caught.exception.message_dict)
        with transaction.atomic(), self.assertRaises(IntegrityError):
            self.entry().save()

    def test_catch_up_is_bounded_in_the_database(self):
        with transaction.atomic(), self.assertRaises(IntegrityError):
            self.entry(catch_up=MAX_CATCH_UP + 1).save()
        self.entry(catch_up=MAX_CATCH_UP).save()


class AdminFormTests(TestCase):
    """The admin's add and change forms validate entries with CronEntry.clean."""

    def setUp(self):
        self.client.force_login(User.objects.create_superuser("root", "root@example.com",
                                                              "pw"))
        self.add_url = reverse("admin:django_jobs_cronentry_add")
        self.form = {"name": "nightly", "expression": "0 3 * * *", "timezone": "UTC",
                     "worker": W, "args": '{"full": true}', "options": '{"queue": "q"}',
                     "catch_up": "0"}

    def change_url(self, entry):
        return reverse("admin:django_jobs_cronentry_change", args=[entry.pk])

    def test_add_form_refuses_a_bad_expression(self):
        self.assertEqual(self.client.get(self.add_url).status_code, 200)
        response = self.client.post(self.add_url, {**self.form, "expression": "60 3 * * *"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "minute field 60 is out of range 0..59")
        self.assertFalse(CronEntry.objects.exists())

    def test_add_form_refuses_other_mistakes(self):
        cases = {
            "timezone": ({"timezone": "Moon/Base"}, "unknown time zone"),
            "worker": ({"worker": "tests.cron_workers.Nope"}, "cannot be imported"),
            "options": ({"options": '{"queu": "q"}'}, "did you mean"),
            "catch_up": ({"catch_up": str(MAX_CATCH_UP + 1)}, "catch_up must be whole seconds"),
            "nickname": ({"expression": "@sometimes"}, "unknown cron nickname"),
            "fields": ({"expression": "0 3 * *"}, "has 4 fields; it needs 5"),
        }
        for case, (changes, message) in cases.items():
            with self.subTest(case):
                response = self.client.post(self.add_url, {**self.form, **changes})
                self.assertEqual(response.status_code, 200)
                self.assertContains(response, message)
        self.assertFalse(CronEntry.objects.exists())

    def test_add_form_saves_a_valid_entry(self):
        response = self.client.post(self.add_url, {**self.form,
                                                   "expression": "*/15 9-17 * * MON-FRI",
                                                   "timezone": "Europe/Paris"})
        self.assertEqual(response.status_code, 302)
        entry = CronEntry.objects.get()
        self.assertEqual((entry.name, entry.expression, entry.timezone, entry.worker,
                          entry.args, entry.options, entry.source, entry.paused),
                         ("nightly", "*/15 9-17 * * MON-FRI", "Europe/Paris", W,
                          {"full": True}, {"queue": "q"}, CronSource.DATABASE, False))

    def test_change_form_refuses_a_bad_expression(self):
        entry = CronEntry.objects.create(name="nightly", expression="0 3 * * *", worker=W)
        url = self.change_url(entry)
        self.assertEqual(self.client.get(url).status_code, 200)
        response = self.client.post(url, {**self.form, "expression": "0 3 * * 1-9"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "day-of-week field 9 is out of range 0..7")
        entry.refresh_from_db()
        self.assertEqual(entry.expression, "0 3 * * *")
        response = self.client.post(url, {**self.form, "expression": "30 3 * * *",
                                           "paused": "on"})
        self.assertEqual(response.status_code, 302)
        entry.refresh_from_db()
        self.assertEqual((entry.expression, entry.paused), ("30 3 * * *", True))

    def test_unticking_paused_restarts_the_entry_from_now(self):
        entry = CronEntry.objects.create(name="nightly", expression="0 3 * * *", worker=W,
                                         paused=True, last_slot_at=at(2025, 1, 1, 3))
        before = timezone.now()
        response = self.client.post(self.change_url(entry), {**self.form})  # paused unticked
        self.assertEqual(response.status_code, 302)
        entry.refresh_from_db()
        self.assertFalse(entry.paused)
        self.assertGreaterEqual(entry.last_slot_at, before)

    def test_settings_entry_can_only_be_paused(self):
        entry = CronEntry.objects.create(name="from-settings", expression="0 3 * * *",
                                         worker=W, source=CronSource.SETTINGS)
        response = self.client.post(self.change_url(entry),
                                    {**self.form, "expression": "60 3 * * *", "paused": "on"})
        self.assertEqual(response.status_code, 302)
        entry.refresh_from_db()
        self.assertEqual((entry.expression, entry.worker, entry.paused),
                         ("0 3 * * *", W, True))


class CronCommandTests(TestCase):
    def call(self, *args):
        out = io.StringIO()
        call_command("jobs", "cron", *args, stdout=out, stderr=io.StringIO())
        return out.getvalue()

    # ``--args`` is stored under another dest: Django reserves options["args"] for a
    # command's positional arguments.
    def test_add_with_every_option(self):
        out = self.call("add", "nightly", "0 3 * * *", W, "--args", '{"full": true}',
                        "--timezone", "Europe/Paris", "--catch-up", "3600", "--queue", "q",
                        "--priority", "2")
        entry = CronEntry.objects.get()
        self.assertEqual((entry.name, entry.expression, entry.worker, entry.args,
                          entry.timezone, entry.catch_up, entry.options, entry.source),
                         ("nightly", "0 3 * * *", W, {"full": True}, "Europe/Paris", 3600,
                          {"queue": "q", "priority": 2}, CronSource.DATABASE))
        self.assertIn(f"added cron entry nightly; next run {entry.next_run():%Y-%m-%d} ", out)

    def test_add_with_defaults(self):
        self.call("add", "boot", "@reboot", W)
        entry = CronEntry.objects.get()
        self.assertEqual((entry.args, entry.options, entry.timezone, entry.catch_up),
                         ({}, {}, "", 0))
        self.assertEqual(entry.timezone_name, "UTC")  # DJANGO_JOBS["CRON_TIMEZONE"]

    def test_add_reboot(self):
        self.assertIn("next run at cluster start", self.call("add", "boot", "@reboot", W))

    def test_add_never_running_expression(self):
        self.assertNotIn("cluster start", self.call("add", "never", "0 0 30 2 *", W))

    def test_add_refuses_invalid_entries(self):
        cases = {
            ("bad", "0 0 * * *", W, "--timezone", "Nowhere/Land"): "unknown time zone",
            ("bad", "60 0 * * *", W): "minute field 60 is out of range 0..59",
            ("bad", "@daily", "tests.cron_workers.Nope"): "cannot be imported",
            ("bad", "@daily", W, "--priority", "10"): "priority must be an integer",
            ("bad", "@daily", W, "--catch-up", "-5"): "catch_up must be whole seconds",
            ("bad", "@daily", W, "--args", '{"at": NaN}'): "cron args",
        }
        for args, message in cases.items():
            with self.assertRaises(CommandError) as caught:
                self.call("add", *args)
            self.assertIn(message, str(caught.exception))
        self.assertFalse(CronEntry.objects.exists())

    def test_add_refuses_a_taken_name(self):
        CronEntry.objects.create(name="nightly", expression="@daily", worker=W)
        with self.assertRaisesMessage(CommandError, "already exists"):
            self.call("add", "nightly", "@hourly", W)

    def test_add_refuses_args_that_are_not_a_json_object(self):
        for text in ("[1]", "{nope"):
            with self.subTest(text=text), self.assertRaises(CommandError):
                self.call("add", "bad", "@daily", W, "--args", text)
        self.assertFalse(CronEntry.objects.exists())

    def test_list(self):
        self.assertIn("(no cron entries", self.call("list"))
        CronEntry.objects.create(name="nightly", expression="0 3 * * *", worker=W,
                                 timezone="Europe/Paris", paused=True)
        CronEntry.objects.create(name="boot", expression="@reboot", worker=REPORT,
                                 source=CronSource.SETTINGS)
        CronEntry.objects.create(name="never", expression="0 0 30 2 *", worker=W)
        lines = self.call("list").splitlines()
        self.assertEqual(len(lines), 3)
        boot, never, nightly = lines
        self.assertEqual(boot, f"boot  '@reboot' UTC  {REPORT}  next: at cluster start  "
                               f"(settings)")
        self.assertEqual(never, f"never  '0 0 30 2 *' UTC  {W}  next: never  (database)")
        nxt = CronEntry.objects.get(name="nightly").next_run()
        self.assertEqual(nightly, f"nightly  '0 3 * * *' Europe/Paris  {W}  next: "
                                  f"{nxt:%Y-%m-%d %H:%M} UTC  [paused]  (database)")

    def test_pause_resume_delete(self):
        CronEntry.objects.create(name="nightly", expression="@daily", worker=W)
        self.assertEqual(self.call("pause", "nightly"), "cron entry nightly: paused\n")
        self.assertTrue(CronEntry.objects.get().paused)
        self.assertEqual(self.call("resume", "nightly"), "cron entry nightly: resumed\n")
        self.assertFalse(CronEntry.objects.get().paused)
        self.assertEqual(self.call("delete", "nightly"), "cron entry nightly: deleted\n")
        self.assertFalse(CronEntry.objects.exists())
        for action in ("pause", "resume", "delete"):
            with self.subTest(action), self.assertRaisesMessage(
                    CommandError, "no cron entry named 'nightly'"):
                self.call(action, "nightly")

    def test_settings_entries_are_paused_not_deleted(self):
        CronEntry.objects.create(name="nightly", expression="@daily", worker=W,
                                 source=CronSource.SETTINGS)
        self.call("pause", "nightly")
        self.assertTrue(CronEntry.objects.get().paused)
        with self.assertRaisesMessage(CommandError, "comes from DJANGO_JOBS['CRONTAB']"):
            self.call("delete", "nightly")
        self.assertTrue(CronEntry.objects.exists())
