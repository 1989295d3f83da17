"""The cron plugin: which jobs the leader inserts, with a controllable clock.

The cron plugin's ``run(node, engine, now)`` is what a leading node runs every second (it is a
receiver of ``leader_tick``); here the tests call it with the ``now`` they choose, for one or
several leaders (interleaved, one after another, and at the same time from threads with their
own database connections), and check that each (entry, slot) has exactly one job.
"""

import datetime
import logging
import threading
import time
from collections import Counter
from unittest import mock
from zoneinfo import ZoneInfo

from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import TestCase, TransactionTestCase
from django.urls import reverse
from django.utils import timezone

from django_jobs import ConfigurationError, signals
from django_jobs.engines import get_engine
from django_jobs.models import CronEntry, CronSource, Job, Peer
from django_jobs.crontab import parse
from django_jobs.plugins.cron import CLUSTER_MARKER, CLUSTER_TTL, GRACE, Cron, parse_crontab

from .helpers import jobs_settings_with
from .runtime_workers import RuntimeTestCase, wait_until

UTC = datetime.UTC
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)
T0 = datetime.datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # a Monday
W = "tests.cron_workers.CronWorker"
REPORT = "tests.cron_workers.ReportWorker"


def at(*args, **kwargs):
    return datetime.datetime(*args, **kwargs, tzinfo=UTC)


def add_entry(name, expression, worker=W, *, created=T0 - SECOND, **fields):
    """A database entry created at ``created`` (by default just before T0)."""
    return CronEntry.objects.create(name=name, expression=expression, worker=worker,
                                    created_at=created, **fields)


class Leader:
    """A leading node as the cron plugin sees it (its CRONTAB), with a plugin of its own."""

    def __init__(self, crontab=()):
        self.plugin = Cron(list(crontab))

    def run(self, engine, now):
        return self.plugin.run(self, engine, now)

    def reboot_jobs(self, engine, now):
        return self.plugin.reboot_jobs(self, engine, now)


def synced(crontab, created=T0 - SECOND):
    """Mirror ``crontab`` into the cron table as a leader does, dated ``created``."""
    CronEntry.objects.sync_settings(parse_crontab(crontab))
    CronEntry.objects.filter(source=CronSource.SETTINGS).update(created_at=created)


def expected_slots(expression, after, until, tz="UTC"):
    """The run times in (after, until], by a minute-by-minute search of the wall clock."""
    parsed, zone = parse(expression), ZoneInfo(tz)
    slots = []
    minute = after.replace(second=0, microsecond=0) + MINUTE
    while minute <= until:
        local = minute.astimezone(zone)
        if local.fold == 0 and parsed.matches(local.replace(tzinfo=None)):
            slots.append(minute)
        minute += MINUTE
    return slots


def times(start, end, step):
    """start, start + step, ... up to end (inclusive)."""
    now = start
    while now <= end:
        yield now
        now += step


def inserted():
    """Counter of (cron_name, cron_slot) over every job in the table."""
    return Counter((job.meta["cron_name"], job.meta["cron_slot"])
                   for job in Job.objects.all())


def cron_jobs(name):
    return sorted((job for job in Job.objects.all() if job.meta.get("cron_name") == name),
                  key=lambda job: job.meta["cron_slot"])


class CronTestCase(TestCase):
    engine = None

    def setUp(self):
        self.engine = get_engine()

    def run_at(self, plugin, now):
        """``plugin``'s run at ``now``; its result without the ids of the jobs it inserted,
        which are checked here: one per job inserted, each a job in the table."""
        result = dict(plugin.run(self.engine, now))
        ids = result.pop("ids")
        self.assertEqual(len(ids), result["inserted"])
        self.assertEqual(Job.objects.filter(pk__in=ids).count(), len(ids))
        return result

    def assertEachSlotOnce(self, expected):
        """``expected`` maps entry names to slot lists: each slot has exactly one job."""
        want = Counter((name, slot.isoformat()) for name, slots in expected.items()
                       for slot in slots)
        got = inserted()
        self.assertEqual(sorted(got.items()), sorted(want.items()))
        self.assertTrue(all(count == 1 for count in got.values()))


class InsertTests(CronTestCase):
    def test_jobs_carry_the_entry_and_the_cron_meta(self):
        add_entry("report", "*/5 * * * *", args={"kind": "daily"}, timezone="Europe/Paris",
                  options={"queue": "q", "priority": 4, "max_attempts": 2, "tags": ["t"],
                           "meta": {"team": "ops"}})
        plugin = Leader()
        results = [self.run_at(plugin, now) for now in times(T0, T0 + 10 * MINUTE, 20 * SECOND)]
        self.assertEqual(sum(r["inserted"] for r in results), 3)
        self.assertEqual(results[0], {"inserted": 1})
        jobs = cron_jobs("report")
        self.assertEqual([job.scheduled_at for job in jobs],
                         [T0, T0 + 5 * MINUTE, T0 + 10 * MINUTE])
        for job in jobs:
            self.assertEqual(job.worker, W)
            self.assertEqual(job.args, {"kind": "daily"})
            self.assertEqual((job.queue, job.priority, job.max_attempts, job.tags),
                             ("q", 4, 2, ["t"]))
            self.assertEqual(job.meta, {"team": "ops", "cron": True,
                                        "cron_expr": "*/5 * * * *",
                                        "cron_tz": "Europe/Paris", "cron_name": "report",
                                        "cron_slot": job.scheduled_at.isoformat()})
            self.assertEqual(job.state, "available")  # the slot is in the past
        self.assertEqual(CronEntry.objects.get(name="report").last_slot_at, T0 + 10 * MINUTE)
        self.assertEqual(Job.objects.filter(meta__cron_name="report").count(), 3)

    def test_worker_options_apply_when_the_entry_sets_none(self):
        add_entry("plain", "@hourly", REPORT)
        self.run_at(Leader(), T0 + 5 * SECOND)
        job = cron_jobs("plain")[0]
        self.assertEqual((job.queue, job.priority, job.max_attempts, job.tags),
                         ("reports", 3, 7, ["report"]))
        self.assertEqual(job.meta["cron_tz"], "UTC")

    def test_settings_entries_are_inserted_too(self):
        synced([("*/10 * * * *", W, {"name": "ten", "args": {"n": 1}, "queue": "q"}),
                ("@hourly", REPORT)])
        plugin = Leader([("*/10 * * * *", W, {"name": "ten", "args": {"n": 1}, "queue": "q"}),
                       ("@hourly", REPORT)])
        for now in times(T0, T0 + 30 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        self.assertEachSlotOnce({"ten": [T0 + n * 10 * MINUTE for n in range(4)],
                                 REPORT: [T0]})
        self.assertEqual(cron_jobs("ten")[0].args, {"n": 1})
        self.assertEqual(cron_jobs("ten")[0].queue, "q")

    def test_running_again_at_the_same_time_inserts_nothing(self):
        add_entry("every", "* * * * *")
        plugin = Leader()
        self.assertEqual(self.run_at(plugin, T0 + 5 * SECOND), {"inserted": 1})
        self.assertEqual(self.run_at(plugin, T0 + 5 * SECOND), {"inserted": 0})
        self.assertEqual(self.run_at(Leader(), T0 + 6 * SECOND), {"inserted": 0})
        # Even with the entry's progress forgotten, the slot's unique key refuses a second job.
        CronEntry.objects.update(last_slot_at=None)
        self.assertEqual(self.run_at(Leader(), T0 + 7 * SECOND), {"inserted": 0})
        self.assertEqual(Job.objects.count(), 1)

    def test_a_slot_job_blocks_its_slot_in_every_state(self):
        add_entry("every", "* * * * *")
        self.run_at(Leader(), T0 + 5 * SECOND)
        for state in ("completed", "discarded", "cancelled"):
            Job.objects.update(state=state)
            CronEntry.objects.update(last_slot_at=None)
            self.assertEqual(self.run_at(Leader(), T0 + 10 * SECOND), {"inserted": 0})
        self.assertEqual(Job.objects.count(), 1)

    def test_time_zone_and_daylight_saving_changes(self):
        # 02:30 in Paris: skipped on 2024-03-31, run once on 2024-10-27 (which has two).
        add_entry("spring", "30 2 * * *", timezone="Europe/Paris", catch_up=7 * 86400,
                  created=at(2024, 3, 28))
        self.run_at(Leader(), at(2024, 4, 2, 12))
        CronEntry.objects.update(paused=True)
        add_entry("fall", "30 2 * * *", timezone="Europe/Paris", catch_up=7 * 86400,
                  created=at(2024, 10, 25))
        self.run_at(Leader(), at(2024, 11, 1, 12))  # a week back: from 2024-10-25 12:00
        self.assertEqual([job.scheduled_at for job in cron_jobs("spring")],
                         [at(2024, 3, 28, 1, 30), at(2024, 3, 29, 1, 30),
                          at(2024, 3, 30, 1, 30), at(2024, 4, 1, 0, 30),
                          at(2024, 4, 2, 0, 30)])
        self.assertEqual([job.scheduled_at for job in cron_jobs("fall")],
                         [at(2024, 10, 26, 0, 30), at(2024, 10, 27, 0, 30),
                          at(2024, 10, 28, 1, 30), at(2024, 10, 29, 1, 30),
                          at(2024, 10, 30, 1, 30), at(2024, 10, 31, 1, 30),
                          at(2024, 11, 1, 1, 30)])

    def test_due_yields_active_entries_with_slots(self):
        every = add_entry("every", "* * * * *")
        caught_up = add_entry("caught-up", "* * * * *", catch_up=3600)
        add_entry("paused", "* * * * *", paused=True)
        add_entry("boot", "@reboot")
        add_entry("yearly", "@yearly")
        due = dict(CronEntry.objects.due(T0 + 2 * MINUTE + SECOND, GRACE))
        # Within the grace (the last minute) without catch-up; since creation with it.
        self.assertEqual(due, {every: [T0 + 2 * MINUTE],
                               caught_up: [T0, T0 + MINUTE, T0 + 2 * MINUTE]})
        self.assertEqual([e.name for e in CronEntry.objects.active()],
                         ["boot", "caught-up", "every", "yearly"])


class LeaderTests(CronTestCase):
    """Several leaders, one after another or at the same time: each slot once."""

    CRONTAB = [
        ("* * * * *", W, {"name": "every-minute"}),
        ("*/5 * * * *", W, {"name": "five-new-york", "timezone": "America/New_York"}),
        ("7,23 12 * * MON", W, {"name": "odd-minutes", "args": {"x": 1}}),
        ("@hourly", REPORT),
    ]
    DATABASE = {"name": "two-lord-howe", "expression": "*/2 * * * *",
                "timezone": "Australia/Lord_Howe"}

    def setUp(self):
        super().setUp()
        synced(self.CRONTAB)
        add_entry(**self.DATABASE)

    def expected(self, until):
        entries = {name: (expression, tz) for name, expression, tz in
                   CronEntry.objects.values_list("name", "expression", "timezone")}
        return {name: expected_slots(expression, T0 - SECOND, until, tz or "UTC")
                for name, (expression, tz) in entries.items()}

    def test_two_leaders_interleaved_insert_each_slot_once(self):
        a, b = Leader(self.CRONTAB), Leader(self.CRONTAB)
        end = T0 + 30 * MINUTE
        for now in times(T0, end, 20 * SECOND):
            self.run_at(a, now)
            self.run_at(b, now + 7 * SECOND)   # a second leader whose clock is 7 s ahead
            self.run_at(b, now - 3 * SECOND)   # ... and one run late
        self.run_at(b, end + 7 * SECOND)
        expected = self.expected(end + 7 * SECOND)
        self.assertEqual(len(expected["every-minute"]), 31)
        self.assertEqual(len(expected["odd-minutes"]), 2)
        self.assertEachSlotOnce(expected)

    def test_leader_killed_between_slots_loses_none(self):
        a, b = Leader(self.CRONTAB), Leader(self.CRONTAB)
        for now in times(T0 + 5 * SECOND, T0 + 15 * MINUTE + 45 * SECOND, 30 * SECOND):
            self.run_at(a, now)
        # a stops at 12:15:35; b takes over 50 s later (less than the grace), after the
        # 12:16 slot has passed.
        resume = T0 + 16 * MINUTE + 25 * SECOND
        self.assertLess((resume - (T0 + 15 * MINUTE + 35 * SECOND)).total_seconds(), GRACE)
        for now in times(resume, T0 + 30 * MINUTE, 30 * SECOND):
            self.run_at(b, now)
        self.assertEachSlotOnce(self.expected(T0 + 29 * MINUTE + 55 * SECOND))

    def test_leader_killed_after_inserting_before_recording_progress(self):
        a, b = Leader(self.CRONTAB), Leader(self.CRONTAB)
        for now in times(T0, T0 + 10 * MINUTE, 30 * SECOND):
            self.run_at(a, now)
        progress = dict(CronEntry.objects.values_list("name", "last_slot_at"))
        self.run_at(a, T0 + 10 * MINUTE + 40 * SECOND)
        self.run_at(a, T0 + 11 * MINUTE + 10 * SECOND)
        # a's last runs inserted their jobs but died before updating last_slot_at.
        for name, last in progress.items():
            CronEntry.objects.filter(name=name).update(last_slot_at=last)
        for now in times(T0 + 11 * MINUTE + 30 * SECOND, T0 + 20 * MINUTE, 30 * SECOND):
            self.run_at(b, now)
        self.assertEachSlotOnce(self.expected(T0 + 20 * MINUTE))

    def test_failed_insert_is_offered_again(self):
        a, b = Leader(self.CRONTAB), Leader(self.CRONTAB)
        for now in times(T0, T0 + 5 * MINUTE, 30 * SECOND):
            self.run_at(a, now)
        with mock.patch("django_jobs.plugins.cron.insert_all",
                        side_effect=OperationalError("connection lost")):
            with self.assertRaises(OperationalError):
                self.run_at(a, T0 + 6 * MINUTE + 5 * SECOND)
        self.run_at(b, T0 + 6 * MINUTE + 40 * SECOND)
        self.assertEachSlotOnce(self.expected(T0 + 6 * MINUTE + 40 * SECOND))

    def test_leader_changes_every_few_runs(self):
        leaders = [Leader(self.CRONTAB) for _ in range(3)]
        for index, now in enumerate(times(T0, T0 + 30 * MINUTE, 25 * SECOND)):
            self.run_at(leaders[(index // 4) % 3], now)
        self.assertEachSlotOnce(self.expected(T0 + 30 * MINUTE))


class CatchUpTests(CronTestCase):
    def run_with_downtime(self, stop, back, until, **fields):
        add_entry("every", "* * * * *", **fields)
        plugin = Leader()
        for now in times(T0, stop, 30 * SECOND):
            self.run_at(plugin, now)
        plugin = Leader()  # the cluster comes back
        for now in times(back, until, 30 * SECOND):
            self.run_at(plugin, now)
        return [job.scheduled_at for job in cron_jobs("every")]

    def test_without_catch_up_missed_slots_are_skipped(self):
        slots = self.run_with_downtime(T0 + 5 * MINUTE, T0 + 20 * MINUTE + 30 * SECOND,
                                       T0 + 25 * MINUTE)
        # 12:00-12:05 before, then only what is due within the grace: 12:20 onwards.
        self.assertEqual(slots, [T0 + n * MINUTE for n in [*range(6), *range(20, 26)]])

    def test_slot_older_than_the_grace_is_skipped(self):
        add_entry("every", "* * * * *")
        plugin = Leader()
        self.run_at(plugin, T0 + 10 * SECOND)
        self.run_at(plugin, T0 + 2 * MINUTE + 30 * SECOND)  # 12:01 is 90 s old
        self.assertEqual([job.scheduled_at for job in cron_jobs("every")],
                         [T0, T0 + 2 * MINUTE])

    def test_catch_up_inserts_missed_slots_once(self):
        slots = self.run_with_downtime(T0 + 5 * MINUTE, T0 + 20 * MINUTE + 30 * SECOND,
                                       T0 + 25 * MINUTE, catch_up=3600)
        self.assertEqual(slots, [T0 + n * MINUTE for n in range(26)])
        self.assertEqual(len(set(slots)), 26)

    def test_catch_up_window_bounds_what_is_caught_up(self):
        slots = self.run_with_downtime(T0 + 5 * MINUTE, T0 + 20 * MINUTE + 30 * SECOND,
                                       T0 + 25 * MINUTE, catch_up=600)
        # Back at 12:20:30 with ten minutes of catch-up: 12:11 onwards.
        self.assertEqual(slots, [T0 + n * MINUTE for n in [*range(6), *range(11, 26)]])

    def test_catch_up_of_a_daily_entry(self):
        add_entry("nightly", "0 3 * * *", catch_up=7 * 86400, created=at(2025, 1, 1))
        plugin = Leader()
        self.run_at(plugin, at(2025, 1, 2, 3, 0, 10))  # the 1st (since creation) and 2nd
        # Down from the 2nd to the 5th: the 3rd, 4th and 5th are caught up, once.
        self.run_at(Leader(), at(2025, 1, 5, 12))
        self.run_at(Leader(), at(2025, 1, 5, 12, 0, 30))
        self.assertEqual([job.scheduled_at for job in cron_jobs("nightly")],
                         [at(2025, 1, d, 3) for d in (1, 2, 3, 4, 5)])

    def test_long_catch_up_inserts_every_missed_slot(self):
        add_entry("every", "* * * * *", catch_up=7 * 86400)
        self.run_at(Leader(), T0)
        back = T0 + 2 * 86400 * SECOND + 30 * SECOND
        plugin = Leader()
        for now in times(back, back + 5 * SECOND, SECOND):
            self.run_at(plugin, now)
        self.assertEqual(len(cron_jobs("every")), 1 + 2 * 24 * 60)

    def test_catch_up_is_bounded_at_seven_days(self):
        add_entry("every", "0 * * * *", catch_up=7 * 86400, created=T0 - 30 * 86400 * SECOND)
        self.run_at(Leader(), T0 + 30 * SECOND)
        slots = [job.scheduled_at for job in cron_jobs("every")]
        self.assertEqual(len(slots), 7 * 24)
        self.assertEqual(slots[0], T0 - 7 * 24 * 3600 * SECOND + 3600 * SECOND)


class EntryLifecycleTests(CronTestCase):
    def test_paused_entry_inserts_nothing(self):
        add_entry("every", "* * * * *", paused=True, catch_up=3600)
        plugin = Leader()
        for now in times(T0, T0 + 10 * MINUTE, 30 * SECOND):
            self.assertEqual(self.run_at(plugin, now), {"inserted": 0})
        self.assertEqual(Job.objects.count(), 0)

    def test_resumed_entry_without_catch_up_starts_from_now(self):
        add_entry("every", "* * * * *")
        plugin = Leader()
        for now in times(T0, T0 + 5 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        CronEntry.objects.update(paused=True)
        for now in times(T0 + 5 * MINUTE + 30 * SECOND, T0 + 15 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        CronEntry.objects.update(paused=False)
        for now in times(T0 + 15 * MINUTE + 30 * SECOND, T0 + 20 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        self.assertEqual([job.scheduled_at for job in cron_jobs("every")],
                         [T0 + n * MINUTE for n in [*range(6), *range(15, 21)]])

    def test_resume_does_not_insert_the_slots_skipped_while_paused(self):
        """``jobs cron resume`` and the admin's resume action restart an entry from now,
        whatever its catch-up. They stamp last_slot_at with the real time, so this test's
        clock is the real one, running 20 minutes behind."""
        self.client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
        base = timezone.now().replace(second=0, microsecond=0) - 20 * MINUTE
        for name in ("by-command", "by-admin"):
            add_entry(name, "* * * * *", catch_up=3600, created=base - SECOND)
        plugin = Leader()
        self.run_at(plugin, base + 10 * SECOND)
        call_command("jobs", "cron", "pause", "by-command", stdout=mock.Mock())
        CronEntry.objects.filter(name="by-admin").update(paused=True)
        for now in times(base + 40 * SECOND, base + 10 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        call_command("jobs", "cron", "resume", "by-command", stdout=mock.Mock())
        self.client.post(reverse("admin:django_jobs_cronentry_changelist"),
                         {"action": "resume_entries",
                          "_selected_action": [CronEntry.objects.get(name="by-admin").pk]})
        resumed = dict(CronEntry.objects.values_list("name", "last_slot_at"))
        later = timezone.now() + 90 * SECOND
        self.run_at(plugin, later)
        for name in ("by-command", "by-admin"):
            with self.subTest(name):
                self.assertFalse(CronEntry.objects.get(name=name).paused)
                self.assertGreater(resumed[name], base + 19 * MINUTE)
                self.assertEqual([job.scheduled_at for job in cron_jobs(name)],
                                 [base, *expected_slots("* * * * *", resumed[name], later)])

    def test_resume_through_a_queryset_update_catches_up(self):
        # Only the admin and ``jobs cron resume`` restart an entry from now; clearing
        # ``paused`` by hand lets catch-up insert the runs skipped while paused.
        add_entry("every", "* * * * *", catch_up=3600, paused=True)
        CronEntry.objects.update(paused=False)
        self.run_at(Leader(), T0 + 5 * MINUTE + 10 * SECOND)
        self.assertEqual(len(cron_jobs("every")), 6)

    def test_new_entry_does_not_back_fill_before_its_creation(self):
        plugin = Leader()
        for now in times(T0, T0 + 10 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        add_entry("late", "* * * * *", catch_up=3600, created=T0 + 10 * MINUTE + 30 * SECOND)
        self.run_at(plugin, T0 + 15 * MINUTE + 10 * SECOND)
        self.assertEqual([job.scheduled_at for job in cron_jobs("late")],
                         [T0 + n * MINUTE for n in range(11, 16)])

    def test_changed_expression_applies_from_the_last_slot(self):
        entry = add_entry("change", "*/10 * * * *")
        plugin = Leader()
        for now in times(T0, T0 + 10 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        CronEntry.objects.filter(pk=entry.pk).update(expression="*/3 * * * *")
        for now in times(T0 + 10 * MINUTE + 30 * SECOND, T0 + 20 * MINUTE, 30 * SECOND):
            self.run_at(plugin, now)
        self.assertEqual([(job.scheduled_at, job.meta["cron_expr"])
                          for job in cron_jobs("change")],
                         [(T0, "*/10 * * * *"), (T0 + 10 * MINUTE, "*/10 * * * *"),
                          (T0 + 12 * MINUTE, "*/3 * * * *"), (T0 + 15 * MINUTE, "*/3 * * * *"),
                          (T0 + 18 * MINUTE, "*/3 * * * *")])

    def test_deleted_and_recreated_entry_starts_afresh(self):
        add_entry("again", "* * * * *", catch_up=3600)
        plugin = Leader()
        self.run_at(plugin, T0 + 10 * SECOND)
        CronEntry.objects.filter(name="again").delete()
        add_entry("again", "* * * * *", catch_up=3600, created=T0 + 5 * MINUTE + 30 * SECOND)
        self.run_at(plugin, T0 + 7 * MINUTE + 10 * SECOND)
        self.assertEqual([job.scheduled_at for job in cron_jobs("again")],
                         [T0, T0 + 6 * MINUTE, T0 + 7 * MINUTE])

    def test_a_broken_entry_does_not_stop_the_others(self):
        add_entry("good", "* * * * *")
        add_entry("gone", "* * * * *", worker="tests.cron_workers.RemovedWorker")
        add_entry("garbled", "61 * * * *")
        with self.assertLogs("django_jobs", "ERROR"):
            self.run_at(Leader(), T0 + 10 * SECOND)
        self.assertEqual(len(cron_jobs("good")), 1)


class RebootTests(CronTestCase):
    def setUp(self):
        super().setUp()
        add_entry("boot", "@reboot", args={"hello": "world"}, options={"queue": "boot"})
        add_entry("boot-paused", "@reboot", paused=True)

    def reboot_jobs(self):
        return [job for job in Job.objects.all() if job.meta["cron_slot"].startswith("reboot:")]

    def test_first_run_of_a_cluster_inserts_reboot_entries_once(self):
        plugin = Leader()
        self.assertEqual(self.run_at(plugin, T0), {"inserted": 1})
        [job] = self.reboot_jobs()
        self.assertEqual((job.worker, job.args, job.queue), (W, {"hello": "world"}, "boot"))
        self.assertEqual(job.meta["cron_name"], "boot")
        self.assertEqual(job.meta["cron_expr"], "@reboot")
        self.assertTrue(job.meta["cron"])
        self.assertEqual(job.state, "available")
        marker = Peer.objects.get(name=CLUSTER_MARKER)
        self.assertEqual(job.meta["cron_slot"], f"reboot:{marker.node}")
        # The same leader carries on: no more reboot jobs.
        for now in times(T0 + SECOND, T0 + 5 * MINUTE, SECOND * 7):
            self.run_at(plugin, now)
        self.assertEqual(len(self.reboot_jobs()), 1)

    def test_leader_change_is_not_a_cluster_start(self):
        a, b = Leader(), Leader()
        for now in times(T0, T0 + 2 * MINUTE, SECOND * 10):
            self.run_at(a, now)
        # a dies; b takes over well within the marker's lifetime.
        for now in times(T0 + 2 * MINUTE + 30 * SECOND, T0 + 5 * MINUTE, SECOND * 10):
            self.run_at(b, now)
        self.assertEqual(len(self.reboot_jobs()), 1)

    def test_two_leaders_at_the_first_start_insert_once(self):
        a, b = Leader(), Leader()
        self.run_at(a, T0)
        self.run_at(b, T0)
        self.run_at(b, T0 + 20 * SECOND)
        self.run_at(a, T0 + 21 * SECOND)
        self.assertEqual(len(self.reboot_jobs()), 1)

    def test_cluster_down_longer_than_the_marker_is_a_new_start(self):
        a = Leader()
        for now in times(T0, T0 + MINUTE, 10 * SECOND):
            self.run_at(a, now)
        marker = Peer.objects.get(name=CLUSTER_MARKER)
        self.assertEqual(marker.expires_at, T0 + MINUTE + CLUSTER_TTL)
        # Nobody runs cron for longer than CLUSTER_TTL: the marker expires.
        b = Leader()
        restart = marker.expires_at + SECOND
        for now in times(restart, restart + 2 * MINUTE, 10 * SECOND):
            self.run_at(b, now)
        jobs = self.reboot_jobs()
        self.assertEqual(len(jobs), 2)
        self.assertNotEqual(jobs[0].meta["cron_slot"], jobs[1].meta["cron_slot"])
        # A renewed marker is not a start, however many leaders follow.
        for leader in (Leader(), Leader()):
            self.run_at(leader, restart + 3 * MINUTE)
        self.assertEqual(len(self.reboot_jobs()), 2)

    def test_marker_is_renewed_every_ten_seconds(self):
        a = Leader()
        self.run_at(a, T0)
        self.run_at(a, T0 + 5 * SECOND)
        self.assertEqual(Peer.objects.get(name=CLUSTER_MARKER).expires_at, T0 + CLUSTER_TTL)
        self.run_at(a, T0 + 10 * SECOND)
        self.assertEqual(Peer.objects.get(name=CLUSTER_MARKER).expires_at,
                         T0 + 10 * SECOND + CLUSTER_TTL)

    def test_reboot_entries_added_later_wait_for_the_next_start(self):
        a = Leader()
        self.run_at(a, T0)
        add_entry("boot-later", "@reboot")
        for now in times(T0 + 10 * SECOND, T0 + MINUTE, 10 * SECOND):
            self.run_at(a, now)
        self.assertEqual([job.meta["cron_name"] for job in self.reboot_jobs()], ["boot"])

    def test_settings_reboot_entries_run_on_the_first_start(self):
        self.run_at(Leader([("@reboot", REPORT, {"name": "warm-cache"})]), T0)
        self.assertEqual(sorted(job.meta["cron_name"] for job in self.reboot_jobs()),
                         ["boot", "warm-cache"])

    def test_reboot_jobs_survive_a_failed_insert(self):
        with mock.patch("django_jobs.plugins.cron.insert_all",
                        side_effect=OperationalError("connection lost")):
            with self.assertRaises(OperationalError):
                self.run_at(Leader(), T0)
        self.run_at(Leader(), T0 + 15 * SECOND)
        self.assertEqual(len(self.reboot_jobs()), 1)


class SyncTests(CronTestCase):
    CRONTAB = [
        ("*/5 * * * *", W, {"name": "five", "args": {"a": 1}, "queue": "q",
                            "timezone": "Europe/Paris", "catch_up": 300}),
        ("@daily", REPORT),
    ]

    def rows(self):
        return {row.name: row for row in CronEntry.objects.all()}

    def test_settings_entries_are_added(self):
        self.run_at(Leader(self.CRONTAB), T0)
        rows = self.rows()
        self.assertEqual(sorted(rows), ["five", REPORT])
        five = rows["five"]
        self.assertEqual((five.expression, five.worker, five.args, five.options, five.timezone,
                          five.catch_up, five.source, five.paused),
                         ("*/5 * * * *", W, {"a": 1}, {"queue": "q"}, "Europe/Paris", 300,
                          CronSource.SETTINGS, False))
        # No zone of its own: DJANGO_JOBS["CRON_TIMEZONE"], UTC by default.
        self.assertEqual((rows[REPORT].expression, rows[REPORT].timezone), ("@daily", ""))
        self.assertEqual(rows[REPORT].timezone_name, "UTC")

    def test_changed_entries_are_updated_and_keep_paused(self):
        self.run_at(Leader(self.CRONTAB), T0)
        CronEntry.objects.filter(name="five").update(paused=True, last_slot_at=T0)
        before = self.rows()["five"]
        changed = [("*/7  * * * *", REPORT, {"name": "five", "args": {"b": 2},
                                             "priority": 1}),
                   ("@daily", REPORT)]
        self.run_at(Leader(changed), T0 + MINUTE)
        five = self.rows()["five"]
        self.assertEqual((five.expression, five.worker, five.args, five.options, five.timezone,
                          five.catch_up),
                         ("*/7 * * * *", REPORT, {"b": 2}, {"priority": 1}, "", 0))
        self.assertTrue(five.paused)
        self.assertEqual((five.pk, five.created_at, five.last_slot_at),
                         (before.pk, before.created_at, T0))

    def test_removed_entries_are_deleted_and_database_entries_kept(self):
        add_entry("mine", "@hourly")
        self.run_at(Leader(self.CRONTAB), T0)
        self.run_at(Leader(self.CRONTAB[1:]), T0 + MINUTE)
        self.assertEqual(sorted(self.rows()), ["mine", REPORT])
        self.run_at(Leader(), T0 + 2 * MINUTE)
        self.assertEqual(sorted(self.rows()), ["mine"])

    def test_database_entry_of_the_same_name_wins(self):
        add_entry("five", "@hourly")
        with self.assertLogs("django_jobs.cron", logging.WARNING) as logs:
            self.run_at(Leader(self.CRONTAB), T0)
        self.assertIn("'five' in CRONTAB is shadowed by a database entry", logs.output[0])
        five = self.rows()["five"]
        self.assertEqual((five.expression, five.source), ("@hourly", CronSource.DATABASE))

    def test_sync_happens_on_a_plugins_first_run(self):
        plugin = Leader(self.CRONTAB)
        self.run_at(plugin, T0)
        CronEntry.objects.filter(name="five").delete()
        self.run_at(plugin, T0 + MINUTE)
        self.assertNotIn("five", self.rows())  # a running leader does not sync again
        self.run_at(Leader(self.CRONTAB), T0 + 2 * MINUTE)
        self.assertIn("five", self.rows())     # the next leader does

    def test_new_settings_entry_does_not_back_fill(self):
        self.run_at(Leader(self.CRONTAB), T0 + 12 * MINUTE)
        # created_at is the (real) time of the sync, after T0: nothing before it is due.
        self.assertEqual(Job.objects.count(), 0)

    def test_sync_tolerates_a_concurrent_sync(self):
        CronEntry.objects.sync_settings(parse_crontab(self.CRONTAB))  # the other leader's sync
        with mock.patch.object(type(CronEntry.objects.all()), "first", return_value=None):
            CronEntry.objects.sync_settings(parse_crontab(self.CRONTAB))
        self.assertEqual(sorted(self.rows()), ["five", REPORT])

    def test_long_expression_in_settings_is_refused(self):
        # The column holds 128 characters: a longer expression is refused when the crontab is
        # read (check E009), on every engine, instead of failing the leader's sync later.
        every_minute = ",".join(str(m) for m in range(60)) + " * * * *"
        self.assertGreater(len(every_minute), 128)
        with self.assertRaises(ConfigurationError) as caught:
            Leader([(every_minute, W, {"name": "long"})])
        self.assertIn("the limit is 128", str(caught.exception))
        self.assertFalse(CronEntry.objects.filter(name="long").exists())


class ThreadedLeaderTests(TransactionTestCase):
    """Two leaders at the same time, each in its own thread with its own connection."""

    def race(self, count, target):
        barrier = threading.Barrier(count)
        errors = []

        def run(index):
            try:
                target(index, barrier)
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        if errors:
            raise errors[0]

    def test_two_leaders_in_threads_insert_each_slot_once(self):
        crontab = [("* * * * *", W, {"name": "every-minute"}),
                   ("*/5 * * * *", W, {"name": "five", "timezone": "Europe/Paris"}),
                   ("@reboot", REPORT, {"name": "boot"})]
        synced(crontab)
        add_entry("two", "*/2 * * * *", timezone="Australia/Lord_Howe")
        end = T0 + 30 * MINUTE

        def leader(index, barrier):
            plugin, engine = Leader(crontab), get_engine()
            for now in times(T0, end, 30 * SECOND):
                barrier.wait(timeout=30)
                plugin.run(engine, now + index * SECOND)

        self.race(2, leader)
        want = Counter()
        for name, expression, tz in [("every-minute", "* * * * *", "UTC"),
                                     ("five", "*/5 * * * *", "Europe/Paris"),
                                     ("two", "*/2 * * * *", "Australia/Lord_Howe")]:
            want.update((name, slot.isoformat())
                        for slot in expected_slots(expression, T0 - SECOND, end, tz))
        got = inserted()
        boots = [key for key in got if key[0] == "boot"]
        self.assertEqual(len(boots), 1)
        self.assertEqual(got[boots[0]], 1)
        del got[boots[0]]
        self.assertEqual(sorted(got.items()), sorted(want.items()))

    def test_first_start_in_threads_inserts_reboot_once(self):
        add_entry("boot", "@reboot")
        for round_ in range(5):
            Peer.objects.filter(name=CLUSTER_MARKER).delete()
            start = T0 + round_ * MINUTE

            def leader(index, barrier, start=start):
                plugin, engine = Leader(), get_engine()
                barrier.wait(timeout=30)
                plugin.run(engine, start)

            self.race(4, leader)
            self.assertEqual(Job.objects.count(), round_ + 1)


class NodeTests(RuntimeTestCase):
    def test_leader_node_runs_reboot_entry(self):
        results = []

        def receiver(sender, plugin, result, **kwargs):
            if plugin == "cron":
                results.append(result)

        signals.plugin_ran.connect(receiver)
        self.addCleanup(signals.plugin_ran.disconnect, receiver)
        self.enterContext(jobs_settings_with(
            CRONTAB=[("@reboot", W, {"name": "boot", "args": {"n": 1}})]))
        self.start_node({"cron": 2}, plugins=True)
        job = wait_until(lambda: Job.objects.filter(state="completed").first(), timeout=10)
        self.assertEqual((job.worker, job.args, job.meta["cron_name"]), (W, {"n": 1}, "boot"))
        self.assertEqual(CronEntry.objects.get().source, CronSource.SETTINGS)
        self.assertEqual(results[0], {"inserted": 1, "ids": [job.pk]})

    def test_node_without_plugins_inserts_nothing(self):
        self.enterContext(jobs_settings_with(CRONTAB=[("@reboot", W)]))
        self.start_node({"cron": 2}, plugins=False)
        add_entry("boot", "@reboot")
        time.sleep(1.5)
        self.assertEqual(Job.objects.count(), 0)


class DefaultTimeZoneTests(CronTestCase):
    """``DJANGO_JOBS["CRON_TIMEZONE"]``: the zone of every entry, static or dynamic, that names
    none; an entry's own zone wins."""

    def test_entries_without_a_zone_follow_cron_timezone(self):
        add_entry("dynamic", "0 9 * * *")
        add_entry("own", "0 9 * * *", timezone="UTC")
        crontab = [("0 9 * * *", W, {"name": "static"})]
        start = at(2025, 1, 6, 7, 0)  # 08:00 in Paris
        with jobs_settings_with(CRON_TIMEZONE="Europe/Paris", CRONTAB=crontab):
            synced(crontab, created=start)
            CronEntry.objects.update(created_at=start)
            self.assertEqual(CronEntry.objects.get(name="static").timezone, "")
            plugin = Leader(crontab)
            for hours in (1, 2):
                self.run_at(plugin, start + hours * 60 * MINUTE + 5 * SECOND)
        # 09:00 in Paris is 08:00 UTC in winter; the entry of its own zone runs at 09:00 UTC.
        for name in ("dynamic", "static"):
            [job] = cron_jobs(name)
            self.assertEqual((job.scheduled_at, job.meta["cron_tz"]),
                             (at(2025, 1, 6, 8, 0), "Europe/Paris"))
        [job] = cron_jobs("own")
        self.assertEqual((job.scheduled_at, job.meta["cron_tz"]), (at(2025, 1, 6, 9, 0), "UTC"))

    def test_next_run_follows_cron_timezone(self):
        entry = add_entry("dynamic", "0 9 * * *")
        self.assertEqual(entry.next_run(T0), at(2025, 1, 7, 9, 0))
        with jobs_settings_with(CRON_TIMEZONE="America/New_York"):
            self.assertEqual(entry.next_run(T0), at(2025, 1, 6, 14, 0))

    def test_the_reported_ids_are_bounded(self):
        for name in ("a", "b", "c"):
            add_entry(name, "* * * * *")
        with mock.patch("django_jobs.plugins.cron.REPORTED_IDS", 2):
            result = Leader().run(self.engine, T0 + 5 * SECOND)
        self.assertEqual(result["inserted"], 3)
        self.assertEqual(len(result["ids"]), 2)
        self.assertLess(set(result["ids"]), set(Job.objects.values_list("pk", flat=True)))
