"""The built-in plugins' settings: each plugin validates its own options (system checks report
every problem, naming the option, with a "did you mean" for typos), the plugins are built from
``DJANGO_JOBS`` (and built anew when it changes), and a ``runjobs`` node runs what the
settings say: no pruner with ``"PRUNER": False``, the pruner's interval and its retention per
state, and cron's default time zone.
"""

from __future__ import annotations

import datetime
import math

from django.core.management import call_command
from django.test import SimpleTestCase, TransactionTestCase, override_settings
from django.utils import timezone

from django_jobs.checks import check_settings
from django_jobs.exceptions import ConfigurationError
from django_jobs.models import Job
from django_jobs.plugins import (Cron, Lifeline, Pruner, Stager, connect_builtin_plugins,
                                 connected_plugins)

from . import runtime_workers as w
from .helpers import jobs_settings_with, set_state
from .processes import RunjobsMixin
from .waits import holds_for, wait_until

DAY = 86400


def pruner_errors(pruner):
    with override_settings(DJANGO_JOBS={"PRUNER": pruner}):
        return [e for e in check_settings() if e.id == "django_jobs.E006"]


def connected(name):
    return [p for p in connected_plugins() if p.name == name]


class PrunerOptionTests(SimpleTestCase):
    def test_valid_shapes(self):
        for pruner in (False, True, {}, {"max_age": None}, {"max_age": "infinity"},
                       {"max_age": datetime.timedelta(days=3), "interval": 0.5, "limit": 1},
                       {"by_state": {"discarded": (30, "days"), "completed": 3600,
                                     "cancelled": None},
                        "by_queue": {"audit": math.inf}, "by_worker": {"a.B": 60.5}}):
            with self.subTest(pruner=pruner):
                self.assertEqual(pruner_errors(pruner), [])

    def test_each_problem_names_its_option(self):
        cases = [
            ({"intervall": 5}, ["DJANGO_JOBS['PRUNER'] has an unknown option 'intervall'."],
             ["Did you mean 'interval'?"]),
            ({"by_state": {"discared": 60}},
             ["DJANGO_JOBS['PRUNER']['by_state'] has an unknown state 'discared'. Only "
              "finished jobs are pruned."], ["Did you mean 'discarded'?"]),
            ({"by_state": {"available": 60}},
             ["DJANGO_JOBS['PRUNER']['by_state'] has an unknown state 'available'. Only "
              "finished jobs are pruned."], ["Valid states: completed, discarded, cancelled."]),
            ({"interval": 0}, ["DJANGO_JOBS['PRUNER']['interval'] must be more than 0 "
                               "seconds, not 0."], [None]),
            ({"max_age": -1}, ["DJANGO_JOBS['PRUNER']['max_age'] must be a finite duration of "
                               "0 or more, not -1."], [None]),
            ({"limit": 2.5}, ["DJANGO_JOBS['PRUNER']['limit'] must be a whole number of jobs "
                              "of at least 1, not 2.5."], [None]),
            ({"by_queue": ["audit"]}, ["DJANGO_JOBS['PRUNER']['by_queue'] must be a dict of "
                                       "queue -> age, not ['audit']."], [None]),
            ({"by_worker": {"a.B": "1 day"}},
             ["DJANGO_JOBS['PRUNER']['by_worker']['a.B'] must be seconds, a timedelta or "
              "(n, 'minutes') or 'infinity', not '1 day'."], [None]),
            ({"by_queue": {"": 60}}, ["DJANGO_JOBS['PRUNER']['by_queue'] names must be "
                                      "non-empty strings, not ''."], [None]),
            ("off", ["DJANGO_JOBS['PRUNER'] must be a dict of options or False (no pruning), "
                     "not 'off'."], [None]),
        ]
        for pruner, messages, hints in cases:
            with self.subTest(pruner=pruner):
                errors = pruner_errors(pruner)
                self.assertEqual([e.msg for e in errors], messages)
                self.assertEqual([e.hint for e in errors][:1], hints[:1])

    def test_the_plugin_refuses_what_the_check_reports(self):
        with self.assertRaisesMessage(ConfigurationError, "Did you mean 'interval'?"):
            Pruner({"intervall": 5})
        with self.assertRaisesMessage(ConfigurationError, "['limit'] must be a whole number"):
            Pruner({"limit": 0, "max_age": 60})

    def test_options_are_read_once_with_the_defaults(self):
        pruner = Pruner({"max_age": (2, "days"), "by_state": {"completed": 3600},
                         "by_queue": {"audit": None}})
        self.assertEqual((pruner.interval, pruner.limit), (30.0, 10_000))
        retention = pruner.retention
        self.assertEqual(retention.max_age, 2 * DAY)
        self.assertEqual(dict(retention.by_state), {"completed": 3600})
        self.assertEqual(dict(retention.by_queue), {"audit": math.inf})
        self.assertEqual(Pruner(True).retention.max_age, 7 * DAY)
        with jobs_settings_with(PRUNER={"interval": 2, "limit": 7}):
            built = Pruner.from_settings()
            self.assertEqual((built.interval, built.limit, built.retention.max_age),
                             (2.0, 7, 7 * DAY))
        with jobs_settings_with(PRUNER=False):
            self.assertIsNone(Pruner.from_settings())


class OtherPluginOptionTests(SimpleTestCase):
    def test_rescue_after(self):
        for value in (2, 0, "15", None, True):
            with self.subTest(value=value), override_settings(
                    DJANGO_JOBS={"RESCUE_AFTER": value}):
                [error] = check_settings()
                self.assertEqual(error.id, "django_jobs.E008")
                self.assertIn("DJANGO_JOBS['RESCUE_AFTER']", error.msg)
        with override_settings(DJANGO_JOBS={"RESCUE_AFTER": 3}):
            self.assertEqual(check_settings(), [])
            self.assertEqual(Lifeline.from_settings().rescue_after, 3.0)
            self.assertEqual(Lifeline.from_settings(rescue_after=20).rescue_after, 20.0)

    def test_cron_timezone(self):
        for value, text in (("Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
                            ("", "must be a non-empty string, not ''"),
                            (None, "must be a non-empty string, not None")):
            with self.subTest(value=value), override_settings(
                    DJANGO_JOBS={"CRON_TIMEZONE": value}):
                [error] = check_settings()
                self.assertEqual(error.id, "django_jobs.E009")
                self.assertTrue(error.msg.startswith("DJANGO_JOBS['CRON_TIMEZONE'] is invalid:"))
                self.assertIn(text, error.msg)
        with override_settings(DJANGO_JOBS={"CRON_TIMEZONE": "Asia/Kolkata"}):
            self.assertEqual(check_settings(), [])

    def test_cron_timezone_typo_of_the_key(self):
        with override_settings(DJANGO_JOBS={"CRON_TIMEZNE": "UTC"}):
            [error] = check_settings()
        self.assertEqual((error.id, error.hint), ("django_jobs.E002",
                                                  "Did you mean 'CRON_TIMEZONE'?"))


class ConnectTests(SimpleTestCase):
    def test_the_builtin_plugins_follow_the_settings(self):
        self.assertEqual([type(p) for p in connected("pruner")], [Pruner])
        before = connected("pruner")[0]
        with jobs_settings_with(PRUNER=False):
            self.assertEqual(connected("pruner"), [])
            self.assertEqual(len(connected("stager")), 1)
        [after] = connected("pruner")
        self.assertIsNot(after, before)
        with jobs_settings_with(PRUNER={"interval": 3}, RESCUE_AFTER=4):
            self.assertEqual(connected("pruner")[0].interval, 3.0)
            self.assertEqual(connected("lifeline")[0].rescue_after, 4.0)
        self.assertEqual(connected("pruner")[0].interval, 30.0)

    def test_a_plugin_with_bad_settings_is_left_out_and_logged(self):
        with self.assertLogs("django_jobs.plugins", "ERROR") as logs:
            with jobs_settings_with(PRUNER={"limit": 0}):
                self.assertEqual(connected("pruner"), [])
                self.assertEqual(len(connected("cron")), 1)
        self.assertIn("plugin pruner is not running: DJANGO_JOBS['PRUNER']['limit']",
                      logs.output[0])
        self.assertEqual(len(connected("pruner")), 1)

    def test_overrides(self):
        try:
            connect_builtin_plugins(lifeline={"rescue_after": 9})
            self.assertEqual(connected("lifeline")[0].rescue_after, 9.0)
            with self.assertRaisesMessage(ConfigurationError, "no built-in plugin named pruners"):
                connect_builtin_plugins(pruners={})
        finally:
            connect_builtin_plugins()
        self.assertEqual(connected("lifeline")[0].rescue_after, 15.0)
        self.assertEqual({type(p) for p in connected_plugins()} >= {Stager, Lifeline, Pruner,
                                                                     Cron}, True)


class _Null:
    def write(self, text):
        pass

    def flush(self):
        pass


# -- through runjobs ----------------------------------------------------------------------------


def finished(state, age, queue="plug"):
    job = w.ReturnWorker.enqueue({"age": age}, queue=queue)
    column = {"completed": "completed_at", "discarded": "discarded_at",
              "cancelled": "cancelled_at"}[state]
    return set_state(job, state, **{column: timezone.now() - datetime.timedelta(seconds=age)})


def exists(job):
    return Job.objects.filter(pk=job.pk).exists()


class RunjobsPluginSettingsTests(RunjobsMixin, TransactionTestCase):
    """A real ``runjobs`` node, leading alone, with the settings under test."""

    def test_runjobs_restores_the_settings_options_after_rescue_after(self):
        with jobs_settings_with(QUEUES={"plug": 1}):
            call_command("runjobs", "--rescue-after", "7", "--stop-when-empty", "--no-plugins",
                         stdout=_Null(), verbosity=0)
        self.assertEqual(connected("lifeline")[0].rescue_after, 15.0)

    def test_pruner_false_turns_pruning_off(self):
        old = finished("completed", 30 * DAY)
        due = w.ReturnWorker.enqueue({}, queue="plug", schedule_in=0.5)
        node = self.start_runjobs("no-pruner", "--queue", "plug=1",
                                  jobs_settings={"PRUNER": False})
        [plugins] = [line for line in node.log().splitlines() if "plugins:" in line]
        self.assertNotIn("pruner", plugins)
        self.assertIn("stager", plugins)
        # The node leads (its stager runs the scheduled job) and keeps the old job.
        wait_until(lambda: Job.objects.get(pk=due.pk).state == "completed",
                   what="the staged job to run", describe=node.tail)
        self.assertTrue(holds_for(lambda: exists(old), 2.0), "an old job was pruned")
        self.stop_runjobs(node, within=30)

    def test_interval_and_retention_per_state(self):
        completed = finished("completed", 2 * 3600)
        discarded = finished("discarded", 2 * 3600)
        audit = finished("cancelled", 2 * 3600, queue="audit")
        audit_completed = finished("completed", 2 * 3600, queue="audit")
        young = finished("completed", 60)
        node = self.start_runjobs("pruner", "--queue", "plug=1", jobs_settings={
            "PRUNER": {"interval": 1, "by_state": {"completed": 3600},
                       "by_queue": {"audit": None}}})
        wait_until(lambda: not exists(completed), what="the old completed job to be pruned",
                   describe=node.tail)
        # With a 1 s interval a second pass comes at once (the default waits 30 s).
        later = finished("completed", 2 * 3600)
        wait_until(lambda: not exists(later), timeout=15,
                   what="a second pass to prune the job finished 2 hours ago",
                   describe=node.tail)
        self.assertTrue(exists(discarded), "discarded jobs are kept 7 days (max_age)")
        self.assertTrue(exists(audit), "the audit queue keeps its jobs for ever")
        self.assertFalse(exists(audit_completed), "by_state wins over by_queue")
        self.assertTrue(exists(young))
        self.stop_runjobs(node, within=30)

    def test_cron_timezone_is_the_default_zone_of_entries(self):
        node = self.start_runjobs("cron-tz", "--queue", "cron=1", jobs_settings={
            "CRON_TIMEZONE": "Asia/Kolkata",
            "CRONTAB": [["@reboot", "tests.cron_workers.CronWorker", {"name": "boot"}],
                        ["@reboot", "tests.cron_workers.CronWorker",
                         {"name": "own", "timezone": "UTC"}]]})
        wait_until(lambda: Job.objects.filter(state="completed").count() == 2,
                   what="both @reboot jobs to run", describe=node.tail)
        zones = dict((job.meta["cron_name"], job.meta["cron_tz"]) for job in Job.objects.all())
        self.assertEqual(zones, {"boot": "Asia/Kolkata", "own": "UTC"})
        self.stop_runjobs(node, within=30)
