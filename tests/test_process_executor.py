"""``executor = "process"``: attempts in job processes that a timeout, a cancel or the node's
shutdown can kill, even blocked in C (real runjobs nodes, real job processes)."""

from __future__ import annotations

import os
import signal
import time

from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase

import django_jobs
from django_jobs import ConfigurationError, Worker, fetch_recorded, insert_all
from django_jobs.models import Job, JobState
from django_jobs.pro.chunk import chunk_of
from django_jobs.pro.encrypted import SEALED

from .process_workers import (EFFECT_DDL, EFFECT_TABLE, BatchInProcess, ChainInProcess,
                              ChunkInProcess, HookedInProcess, InProcess, SealedInProcess)
from .pro_workers import digest
from .processes import RunjobsMixin, alive
from .waits import wait_until

TIMEOUT = 60.0


class OptionTests(SimpleTestCase):
    def test_an_unknown_executor_is_refused_at_import(self):
        with self.assertRaisesMessage(ConfigurationError, "executor must be 'thread' or"):
            type("Bad", (Worker,), {"__module__": __name__, "executor": "fork"})


class ProcessExecutorTests(RunjobsMixin, TransactionTestCase):
    def setUp(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {EFFECT_TABLE}")
            cursor.execute(EFFECT_DDL)
        self.addCleanup(self._drop)

    def _drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {EFFECT_TABLE}")

    def effects(self) -> dict[int, tuple[int, int]]:
        """Job id -> (pid, parent pid) of the process that performed it."""
        return {job_id: (pid, node) for job_id, pid, node, event in self.events()
                if event == "perform"}

    def events(self) -> list[tuple[int, int, int, str]]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT job_id, pid, node_pid, event FROM {EFFECT_TABLE}")
            return list(cursor.fetchall())

    def start(self, *args: str):
        self.node = self.start_runjobs("procs", "--queue", "procs=3", *args)
        return self.node

    def wait_state(self, job, state: str, timeout: float = TIMEOUT) -> Job:
        wait_until(lambda: Job.objects.get(pk=job.pk).state == state, timeout,
                   what=f"job {job.pk} {state}", describe=lambda: self.runjobs_report(str(
                       Job.objects.filter(pk=job.pk).values("state", "errors").first())))
        return Job.objects.get(pk=job.pk)

    def test_a_job_blocked_in_c_past_its_timeout_is_killed_within_two_seconds(self):
        self.start()
        job = InProcess.enqueue({"sleep": 600, "timeout": 1})
        wait_until(lambda: job.pk in self.effects(), TIMEOUT, what="the job started",
                   describe=lambda: self.runjobs_report(""))
        started = time.monotonic()
        child = self.effects()[job.pk][0]
        done = self.wait_state(job, JobState.RETRYABLE)
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertIn("JobTimeout", done.errors[-1]["error"])
        self.assertIn("timeout of 1 s", done.errors[-1]["error"])
        self.assertEqual(done.attempt, 1)
        self.assertFalse(alive(child), "the job process was killed")
        # The pool replaced it: the next job runs, in another process.
        after = InProcess.enqueue({"result": 7})
        self.wait_state(after, JobState.COMPLETED)
        self.assertNotEqual(self.effects()[after.pk][0], child)

    def test_jobs_run_in_a_process_of_their_own_under_the_node(self):
        self.start()
        job = InProcess.enqueue({"result": 1})
        self.wait_state(job, JobState.COMPLETED)
        pid, parent = self.effects()[job.pk]
        self.assertEqual(parent, self.node.pid)
        self.assertNotEqual(pid, self.node.pid)

    def test_a_cancel_kills_a_job_blocked_in_c(self):
        self.start()
        job = InProcess.enqueue({"sleep": 600})
        wait_until(lambda: job.pk in self.effects(), TIMEOUT, what="the job started",
                   describe=lambda: self.runjobs_report(""))
        child = self.effects()[job.pk][0]
        django_jobs.cancel_job(job)
        wait_until(lambda: not alive(child), 10, what="the job process killed",
                   describe=lambda: self.runjobs_report(""))
        self.wait_state(job, JobState.CANCELLED)
        # The slot is free again: the next job runs.
        self.wait_state(InProcess.enqueue({"result": 3}), JobState.COMPLETED)

    def test_system_exit_in_a_job_process_is_a_counted_failure(self):
        self.start()
        job = InProcess.enqueue({"exit": True})
        done = self.wait_state(job, JobState.RETRYABLE)
        self.assertEqual(done.attempt, 1)
        self.assertIn("SystemExit: 3", done.errors[-1]["error"])

    def test_a_job_process_that_dies_fails_the_attempt_and_is_replaced(self):
        self.start()
        job = InProcess.enqueue({"sleep": 600})
        wait_until(lambda: job.pk in self.effects(), TIMEOUT, what="the job started",
                   describe=lambda: self.runjobs_report(""))
        os.kill(self.effects()[job.pk][0], signal.SIGKILL)
        done = self.wait_state(job, JobState.RETRYABLE)
        self.assertIn("died with signal 9", done.errors[-1]["error"])
        after = InProcess.enqueue({"result": 2})
        self.wait_state(after, JobState.COMPLETED)

    def test_job_features_run_in_the_job_process(self):
        self.start()
        job = SealedInProcess.enqueue({"secret": "s3cret"})
        done = self.wait_state(job, JobState.COMPLETED)
        self.assertEqual(set(done.args), {SEALED})
        self.assertEqual(fetch_recorded(done)["sha256"], digest("s3cret"))

    def test_hooks_run_in_the_job_process(self):
        self.start()
        job = HookedInProcess.enqueue({})
        self.wait_state(job, JobState.COMPLETED)
        events = [(pid, event) for job_id, pid, _, event in self.events() if job_id == job.pk]
        self.assertEqual([event for _, event in events],
                         ["before_process", "perform", "after_process:complete"])
        self.assertEqual(len({pid for pid, _ in events}), 1)
        self.assertNotEqual(events[0][0], self.node.pid)

    def test_a_chain_of_process_jobs_runs_in_order(self):
        self.start()
        jobs = insert_all([ChainInProcess.new({"chain": "a", "sleep": 0.2, "n": i})
                           for i in range(4)])
        for job in jobs:
            self.wait_state(job, JobState.COMPLETED)
        order = [(job_id, event) for job_id, _, _, event in self.events()]
        expected = [(job.pk, event) for job in jobs for event in ("start", "end")]
        self.assertEqual(order, expected)

    def test_a_batch_of_process_jobs_fires_its_callback_once(self):
        self.start()
        members = insert_all(BatchInProcess.new_batch([{"n": i} for i in range(5)]))
        for job in members:
            self.wait_state(job, JobState.COMPLETED)
        wait_until(lambda: [e for e in self.events() if e[3] == "handle_completed"], TIMEOUT,
                   what="handle_completed ran", describe=lambda: self.runjobs_report(""))
        time.sleep(1)  # a second callback would show up by now
        callbacks = [e for e in self.events() if e[3] == "handle_completed"]
        self.assertEqual(len(callbacks), 1)
        self.assertNotEqual(callbacks[0][1], self.node.pid)

    def test_a_chunk_gathers_its_members_in_the_job_process(self):
        jobs = insert_all([ChunkInProcess.new({"n": i}) for i in range(5)])
        self.start()
        for job in jobs:
            self.wait_state(job, JobState.COMPLETED)
        events = [e for e in self.events() if e[3].startswith("chunk:")]
        # Each job processed once, in chunks gathered by leaders running in job processes
        # (the queue's limit lets several leaders gather at once).
        self.assertEqual(sorted(e[0] for e in events), sorted(job.pk for job in jobs))
        by_leader: dict[int, list[str]] = {}
        for job_id, _, parent, event in events:
            self.assertEqual(parent, self.node.pid)
            job = Job.objects.get(pk=job_id)
            by_leader.setdefault(chunk_of(job) or job.pk, []).append(event)
        for chunk in by_leader.values():
            self.assertTrue(all(event == f"chunk:{len(chunk)}" for event in chunk), chunk)

    def test_sigterm_puts_back_a_job_blocked_in_c_and_the_node_exits(self):
        self.start("--grace", "1")
        job = InProcess.enqueue({"sleep": 600})
        wait_until(lambda: job.pk in self.effects(), TIMEOUT, what="the job started",
                   describe=lambda: self.runjobs_report(""))
        child = self.effects()[job.pk][0]
        self.stop_runjobs(self.node, within=30)
        done = Job.objects.get(pk=job.pk)
        self.assertEqual((done.state, done.attempt), (JobState.AVAILABLE, 0))
        self.assertFalse(alive(child))
