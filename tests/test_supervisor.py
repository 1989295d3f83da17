"""``runjobs --processes N``: worker processes under one supervisor, as real processes."""

from __future__ import annotations

import os
import signal
import time

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from django_jobs.models import Job, JobState, Peer, Producer
from django_jobs.runtime.node import LEADER_NAME
from django_jobs.runtime.supervisor import child_argv, resolve_processes

from .helpers import insert_jobs
from .processes import RunjobsMixin, alive
from .survival_workers import EFFECT_DDL, EFFECT_TABLE, RecordWorker, SleepWorker
from .waits import wait_until

#: Waits for the runtime's own schedule on a loaded machine.
TIMEOUT = 60.0


class ProcessesOptionTests(SimpleTestCase):
    def test_resolve(self):
        self.assertEqual(resolve_processes(3), 3)
        self.assertGreaterEqual(resolve_processes("auto"), 1)
        for bad in (0, -1, "two", 1.5, True, None):
            with self.subTest(bad), self.assertRaises(ValueError):
                resolve_processes(bad)

    def test_child_argv_drops_the_option_and_keeps_the_rest(self):
        self.assertEqual(child_argv(["manage.py", "runjobs", "--processes", "4", "-q", "a=1"])
                         [1:], ["manage.py", "runjobs", "-q", "a=1", "--processes", "1"])
        django_main = os.path.join("site-packages", "django", "__main__.py")
        self.assertEqual(child_argv([django_main, "runjobs", "--processes=auto"])[1:],
                         ["-m", "django", "runjobs", "--processes", "1"])

    def test_bad_setting_is_a_system_check_error(self):
        from django_jobs.checks import check_settings

        with override_settings(DJANGO_JOBS={"PROCESSES": 0}):
            self.assertIn("django_jobs.E020", [e.id for e in check_settings()])
        with override_settings(DJANGO_JOBS={"PROCESSES": "auto"}):
            self.assertNotIn("django_jobs.E020", [e.id for e in check_settings()])

    def test_processes_are_refused_from_call_command(self):
        with self.assertRaisesMessage(CommandError, "from the command line"):
            call_command("runjobs", "--processes", "2", "-q", "default=1")


class SupervisorTests(RunjobsMixin, TransactionTestCase):
    def setUp(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {EFFECT_TABLE}")
            cursor.execute(EFFECT_DDL)
        self.addCleanup(self._drop)

    def _drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {EFFECT_TABLE}")

    def effects(self) -> list[tuple[int, int]]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT job_id, pid FROM {EFFECT_TABLE}")
            return list(cursor.fetchall())

    def children(self, count: int) -> list[int]:
        """The pids of the worker processes, once ``count`` of them heartbeat."""
        def producers():
            return Producer.objects.filter(node="multi", queue="survival").count() == count

        wait_until(producers, TIMEOUT, what=f"{count} worker processes heartbeating",
                   describe=lambda: self.runjobs_report(""))
        wait_until(lambda: len(self.child_pids()) == count, TIMEOUT,
                   what=f"{count} child processes", describe=lambda: self.runjobs_report(""))
        return self.child_pids()

    def child_pids(self) -> list[int]:
        supervisor = self.supervisor.pid
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == supervisor and fields[0] != "Z":
                    pids.append(int(entry))
        return sorted(pids)

    def start(self, processes: int = 2, *args: str):
        self.supervisor = self.start_runjobs("multi", "--queue", "survival=3", "--processes",
                                             str(processes), "--rescue-after", "3", *args)
        return self.supervisor

    def test_jobs_run_in_every_process_and_sigterm_stops_them_all(self):
        self.start(2)
        pids = self.children(2)
        ids = [job.pk for job in insert_jobs(SleepWorker, 24, sleep=0.2)]
        wait_until(lambda: Job.objects.filter(pk__in=ids, state=JobState.COMPLETED).count()
                   == len(ids), TIMEOUT, what="every job completed",
                   describe=lambda: self.runjobs_report(""))
        ran_in = {pid for _, pid in self.effects()}
        self.assertEqual(ran_in, set(pids), "each worker process ran jobs")
        self.assertEqual(len(self.effects()), len(ids), "each job ran once")
        self.stop_runjobs(self.supervisor, within=TIMEOUT)
        for pid in pids:
            self.assertFalse(alive(pid), f"worker process {pid} still running")
        self.assertFalse(Producer.objects.filter(node="multi").exists())

    def test_a_killed_child_is_restarted_and_its_jobs_rescued(self):
        self.start(2)
        first, second = self.children(2)
        ids = [job.pk for job in insert_jobs(SleepWorker, 6, sleep=3)]
        wait_until(lambda: Job.objects.filter(state=JobState.EXECUTING).count() == 6, TIMEOUT,
                   what="six jobs executing", describe=lambda: self.runjobs_report(""))
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: first not in self.child_pids() and len(self.child_pids()) == 2,
                   TIMEOUT, what="the killed worker process replaced",
                   describe=lambda: self.runjobs_report(""))
        wait_until(lambda: Job.objects.filter(pk__in=ids, state=JobState.COMPLETED).count()
                   == len(ids), TIMEOUT, what="every job completed, the killed ones rescued",
                   describe=lambda: self.runjobs_report(""))
        self.assertTrue(self.supervisor.alive())
        self.assertIn(second, self.child_pids())

    def test_a_killed_supervisor_leaves_no_worker_process_and_no_executing_job(self):
        self.start(2)
        pids = self.children(2)
        insert_jobs(SleepWorker, 4, sleep=1)
        wait_until(lambda: Job.objects.filter(state=JobState.EXECUTING).exists(), TIMEOUT,
                   what="jobs executing", describe=lambda: self.runjobs_report(""))
        self.supervisor.kill()
        deadline = time.monotonic() + TIMEOUT
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse([pid for pid in pids if alive(pid)],
                         "worker processes outlived their supervisor")
        self.assertFalse(Job.objects.filter(state=JobState.EXECUTING).exists(),
                         "the worker processes stopped as on SIGTERM: nothing left executing")

    def test_one_leader_among_the_processes(self):
        self.start(3)
        self.children(3)
        RecordWorker.enqueue({}, schedule_in=1)  # the stager (leader only) makes it available
        wait_until(lambda: len(self.effects()) == 1, TIMEOUT, what="the scheduled job ran",
                   describe=lambda: self.runjobs_report(""))
        leases = Peer.objects.filter(name=LEADER_NAME)
        self.assertEqual(leases.count(), 1)
        self.assertTrue(leases.get().node.startswith("multi:"))
