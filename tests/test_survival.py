"""Crash and survival tests: real ``runjobs`` processes, killed and restarted.

Every node here is a child process (``python -m django runjobs``, tests/processes.py) using
tests.subprocess_settings, which points it at this run's test database. Jobs record their side
effect as a row of a raw table (tests/survival_workers.py), so what ran, how often and where is
read back from the database. Children write their output to files in a temporary directory;
the tail of each is part of any failure message. Every child is killed when its test ends,
whatever the outcome.

The lifeline rescues a dead node's jobs once its producers have not heartbeated for
``rescue_after`` (15 s by default) and runs every 5 s. The tests that kill a node start every
node with ``--rescue-after 4`` so that the rescue comes within about 10 s instead of 20.

The tests assert what the runtime guarantees (every job completes, its side effect happens
once, a killed node's jobs come back through the lifeline's rescue, not before the dead
producers are stale); the time limits of their waits only keep a stuck test from hanging, and
are generous, for a loaded machine.

Set DJANGO_JOBS_SURVIVAL_LOGS to a directory to keep every child's output there.
"""

import datetime
import os
import time
import uuid

from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

from django_jobs.engines import get_engine
from django_jobs.insertion import insert_all
from django_jobs.models import Job, JobState, Peer, Producer
from django_jobs.plugins.lifeline import rescue_orphans
from django_jobs.runtime import node as node_module

from .helpers import describe_jobs, insert_jobs, producer_row
from .processes import RunjobsMixin, RunjobsProcess
from .survival_workers import (EFFECT_DDL, EFFECT_TABLE, BlockedWorker, RecordWorker,
                               SleepWorker)
from .waits import holds_for, in_thread, join_all, wait_until

QUEUE = SleepWorker.queue
LEADER_NAME = node_module.LEADER_NAME
LEASE = node_module.LEASE
#: ``--rescue-after`` of the nodes in the tests that kill one (at least 3; the default is 15),
#: and the lifeline's interval: a dead node's jobs are back within RESCUE_AFTER +
#: LIFELINE_INTERVAL (plus a leader takeover when the leader died) on an idle machine.
RESCUE_AFTER = 4.0
RESCUE = ("--rescue-after", str(RESCUE_AFTER))
LIFELINE_INTERVAL = 5.0
#: What a stopping node may take beyond the grace period before the test calls it stuck: 2 s
#: for interrupted jobs to settle, then writing outcomes and releasing rows, on a loaded
#: machine.
STOP_SLACK = 30.0
#: Added to every wait for the runtime's own schedule (lease, rescue, lifeline), for load.
SLACK = 30.0


class SurvivalTestCase(RunjobsMixin, TransactionTestCase):
    """Starts nodes, waits on the database, and cleans everything up."""

    def setUp(self) -> None:
        self.assertIn("DJANGO_JOBS_TEST_DB", os.environ, "tests/settings.py sets it")
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {EFFECT_TABLE}")  # left by a crashed run
            cursor.execute(EFFECT_DDL)
        self.addCleanup(self._drop_effect_table)

    def _drop_effect_table(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {EFFECT_TABLE}")

    @property
    def nodes(self) -> list[RunjobsProcess]:
        return getattr(self, "runjobs_processes", [])

    # -- nodes --------------------------------------------------------------------------------

    def start_node(self, name: str, *args: str, limit: int = 4,
                   wait: bool = True) -> RunjobsProcess:
        """Start ``runjobs --node NAME --queue survival=LIMIT ARGS``; wait for its banner."""
        return self.start_runjobs(name, "--queue", f"{QUEUE}={limit}", *args, wait=wait)

    def stop_nodes(self, *nodes: RunjobsProcess, within: float) -> float:
        """SIGTERM ``nodes`` together; assert each exits by itself, with status 0, within
        ``within`` s. Return how long they took."""
        return self.stop_runjobs(*nodes, within=within)

    # -- reading the database -----------------------------------------------------------------

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in Job.objects.values_list("state", flat=True):
            counts[state] = counts.get(state, 0) + 1
        return counts

    def effects(self) -> dict[int, list[tuple[str, int]]]:
        """job id -> [(node, pid)] of every recorded side effect."""
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT job_id, node, pid FROM {EFFECT_TABLE}")
            rows = cursor.fetchall()
        out: dict[int, list[tuple[str, int]]] = {}
        for job_id, node, pid in rows:
            out.setdefault(job_id, []).append((node, pid))
        return out

    def leader(self) -> str | None:
        """The node name of the lease holder (the lease stores "name:process token")."""
        holder = Peer.objects.filter(name=LEADER_NAME).values_list("node", flat=True).first()
        return holder.rsplit(":", 1)[0] if holder else None

    def executing_on(self, node: str) -> list[int]:
        return sorted(pk for pk, by in Job.objects.filter(state=JobState.EXECUTING)
                      .values_list("pk", "attempted_by") if by and by[0] == node)

    def last_heartbeat(self, node: str) -> datetime.datetime:
        """When the (dead) node's producers last heartbeated."""
        return max(Producer.objects.filter(node=node).values_list("heartbeat_at", flat=True))

    def assertRescued(self, orphans: list[int], last_beat: datetime.datetime,
                      by: list[RunjobsProcess]) -> None:
        """Each of ``orphans`` was rescued by the lifeline exactly once, for its killed first
        attempt and no earlier than RESCUE_AFTER s after its node's last heartbeat, then ran
        to completion exactly once, in one of the processes ``by``."""
        effects = self.effects()
        pids = {node.pid for node in by}
        for job in Job.objects.filter(pk__in=orphans):
            rescues = [e for e in job.errors if e["error"].startswith("Rescued")]
            self.assertEqual(len(rescues), 1, job.errors)
            self.assertEqual(rescues[0]["attempt"], 1, "the rescue names the killed attempt")
            after = (datetime.datetime.fromisoformat(rescues[0]["at"])
                     - last_beat).total_seconds()
            self.assertGreaterEqual(after, RESCUE_AFTER, "rescued while still fresh")
            self.assertEqual((job.state, job.attempt), (JobState.COMPLETED, 2),
                             "the rescued attempt counts, like Oban's")
            # The killed attempt may or may not have got to its side effect; the run after
            # the rescue did, once, in the new process.
            reruns = [pid for _node, pid in effects.get(job.pk, []) if pid in pids]
            self.assertEqual(len(reruns), 1, self.report(f"job {job.pk} ran {len(reruns)} "
                                                         f"times after its rescue"))

    def report(self, message: str = "") -> str:
        """``message``, the job counts, the leader and the tail of every child's output."""
        try:
            state = f"jobs: {describe_jobs()}; leader: {self.leader()}"
        except Exception as exc:  # the database itself may be the problem
            state = f"(the database is unreadable: {exc!r})"
        return RunjobsMixin.runjobs_report(self, "\n".join(filter(None, [message, state])))

    runjobs_report = report  # the mixin's own failures say as much

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.1) -> None:
        """Poll ``predicate`` until true; fail after ``timeout`` s, naming ``what`` and
        reporting the job counts and the nodes' output."""
        wait_until(predicate, timeout, what=what, interval=interval, describe=self.report)

    def all_done(self, total: int) -> bool:
        return Job.objects.filter(state=JobState.COMPLETED).count() == total

    def insert(self, worker, count: int, **args) -> list[int]:
        return [job.pk for job in insert_jobs(worker, count, **args)]

    # -- assertions ---------------------------------------------------------------------------

    def assertAllCompleted(self, ids: list[int]) -> None:
        states = dict(Job.objects.filter(pk__in=ids).values_list("pk", "state"))
        bad = {pk: state for pk, state in states.items() if state != JobState.COMPLETED}
        self.assertEqual(len(states), len(ids), self.report("jobs are missing"))
        self.assertEqual(bad, {}, self.report("jobs not completed"))
        self.assertFalse(Job.objects.filter(state=JobState.EXECUTING).exists(),
                         self.report("jobs left executing"))


class SigkillTests(SurvivalTestCase):
    def test_sigkill_mid_jobs_then_restart_rescues_everything(self):
        """One node, several processes: SIGKILL a node while it runs jobs and start it again.

        Completed jobs are not run again; the killed attempts stay executing until the
        lifeline (on the restarted node, which takes the lease back at once: same name) sees
        the dead producers stale, then they run again and complete. Nothing is lost.
        """
        first = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: self.leader() == "a", SLACK, "node a to become leader")
        ids = self.insert(SleepWorker, 24, sleep=0.4)
        self.wait_for(lambda: self.states().get(JobState.COMPLETED, 0) >= 4
                      and len(self.executing_on("a")) >= 2, SLACK,
                      "node a to complete 4 jobs while running 2 more")
        first.kill()
        last_beat = self.last_heartbeat("a")
        orphans = self.executing_on("a")
        done_before = set(Job.objects.filter(state=JobState.COMPLETED).values_list("pk",
                                                                                   flat=True))
        self.assertTrue(orphans, self.report("nothing was executing when the node was killed"))

        second = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: self.leader() == "a", SLACK, "the restarted node a to lead")
        self.wait_for(lambda: self.all_done(len(ids)),
                      RESCUE_AFTER + LIFELINE_INTERVAL + SLACK,
                      f"the killed node's {len(orphans)} jobs to be rescued and completed")

        self.assertAllCompleted(ids)
        effects = self.effects()
        self.assertEqual(sorted(pk for pk in ids if pk not in effects), [],
                         self.report("jobs completed without their side effect"))
        self.assertEqual({pk: effects[pk] for pk in done_before if len(effects[pk]) != 1}, {},
                         "jobs completed before the kill ran again")
        # Rescued by the restarted node's lifeline once the dead producers were stale, then
        # run once more.
        self.assertRescued(orphans, last_beat, by=[second])
        self.assertTrue(second.alive(), self.report("the restarted node died"))
        self.stop_nodes(second, within=STOP_SLACK)


class SigtermTests(SurvivalTestCase):
    GRACE = 2.0

    def test_sigterm_finishes_running_jobs_and_puts_back_the_rest(self):
        """SIGTERM: no more fetching; running jobs finish within the grace period; a job
        still running after it is put back to available with its attempt not counted; the
        process exits by itself with nothing left executing, its producer rows and the lease
        released."""
        node = self.start_node("a", "--grace", str(self.GRACE), limit=4)
        self.wait_for(lambda: self.leader() == "a", SLACK, "node a to become leader")
        jobs = insert_all([*(SleepWorker.new({"sleep": 0.5, "n": i}) for i in range(3)),
                           SleepWorker.new({"sleep": 60}),
                           *(RecordWorker.new({"n": i}) for i in range(3))])
        short, long, waiting = [j.pk for j in jobs[:3]], jobs[3].pk, [j.pk for j in jobs[4:]]
        self.wait_for(lambda: sorted(self.executing_on("a")) == sorted([*short, long]), SLACK,
                      "the four first jobs to start")

        took = self.stop_nodes(node, within=self.GRACE + STOP_SLACK)

        # A lower bound: load only makes the stop slower.
        self.assertGreaterEqual(took, self.GRACE - 0.2, "the long job got its grace period")
        self.assertAllCompletedOrAvailable(short, long, waiting)

    def assertAllCompletedOrAvailable(self, short, long, waiting):
        jobs = {job.pk: job for job in Job.objects.all()}
        effects = self.effects()
        for pk in short:
            self.assertEqual(jobs[pk].state, JobState.COMPLETED, self.report(f"job {pk}"))
            self.assertEqual(len(effects.get(pk, [])), 1)
        job = jobs[long]
        self.assertEqual(job.state, JobState.AVAILABLE, self.report("the long job"))
        self.assertEqual(job.attempt, 0, "the interrupted attempt is not counted")
        self.assertEqual(len(job.errors), 1, job.errors)
        self.assertIn("shut down", job.errors[0]["error"])
        self.assertNotIn(long, effects)
        for pk in waiting:
            self.assertEqual((jobs[pk].state, jobs[pk].attempt, jobs[pk].errors),
                             (JobState.AVAILABLE, 0, []), "fetched after SIGTERM")
            self.assertNotIn(pk, effects)
        self.assertFalse(Job.objects.filter(state=JobState.EXECUTING).exists())
        self.assertFalse(Producer.objects.filter(node="a").exists(), "producer rows left")
        self.assertIsNone(self.leader(), "the lease was not released")
        log = self.nodes[-1].log()
        self.assertIn("interrupted and put back", log)
        self.assertIn("node a stopped", log)

    # A job blocked in one C call cannot be interrupted; after the grace period it is put
    # back and runjobs ends the process rather than wait for the call (which may never return).
    def test_sigterm_exits_even_when_a_job_is_blocked_in_c(self):
        node = self.start_node("a", "--grace", "0.5", limit=2)
        blocked = BlockedWorker.enqueue({"sleep": 30}).pk
        self.wait_for(lambda: self.executing_on("a") == [blocked], SLACK, "the job to start")
        time.sleep(0.2)  # inside time.sleep(30) by now
        node.terminate()
        # Whatever happens to the process, the job is put back, not left executing.
        self.wait_for(lambda: Job.objects.get(pk=blocked).state == JobState.AVAILABLE,
                      0.5 + STOP_SLACK, "the blocked job to be put back")
        job = Job.objects.get(pk=blocked)
        self.assertEqual(job.attempt, 0)
        self.assertIn("shut down", job.errors[-1]["error"])
        # Well before the job's 30 s call returns: runjobs does not wait for it.
        rc = node.wait(20)
        self.assertEqual(rc, 0, self.report("runjobs did not exit after putting the job back"))
        self.assertEqual(self.effects(), {}, "the blocked job finished after all")


class ThreeNodesTests(SurvivalTestCase):
    JOBS = 5000

    def test_three_nodes_run_each_job_exactly_once(self):
        """Three nodes on the same 5,000 jobs: every side effect happens exactly once."""
        nodes = [self.start_node(name, "-v", "0", limit=10, wait=False) for name in "abc"]
        for node in nodes:
            self.wait_runjobs_started(node)
        ids = self.insert(RecordWorker, self.JOBS)
        self.wait_for(lambda: self.all_done(self.JOBS), 90 + SLACK,
                      f"{self.JOBS} jobs to complete", interval=0.2)

        self.assertAllCompleted(ids)
        effects = self.effects()
        self.assertEqual(sorted(effects), sorted(ids), "side effects lost or foreign")
        twice = {pk: runs for pk, runs in effects.items() if len(runs) != 1}
        self.assertEqual(twice, {}, "jobs ran more than once")
        # No job was claimed twice: every attempt but the last is a recorded failure (say, a
        # refused connection on a busy server, which the retry then gets over).
        unexplained = [(pk, attempt, len(errors)) for pk, attempt, errors
                       in Job.objects.values_list("pk", "attempt", "errors")
                       if attempt != len(errors) + 1]
        self.assertEqual(unexplained, [], "attempts without a recorded failure")
        by_node = {}
        for runs in effects.values():
            by_node[runs[0][0]] = by_node.get(runs[0][0], 0) + 1
        self.assertEqual(sorted(by_node), ["a", "b", "c"], f"work per node: {by_node}")
        self.stop_nodes(*nodes, within=STOP_SLACK)
        self.assertFalse(Producer.objects.exists())


class ConnectionKilledTests(SurvivalTestCase):
    def test_node_survives_its_connections_being_terminated(self):
        """pg_terminate_backend on every connection of the node, twice, while it runs jobs:
        it logs the errors, reconnects and completes every job; the process is never
        restarted; heartbeat, lease and LISTEN work afterwards."""
        if connection.vendor != "postgresql":
            self.skipTest("pg_terminate_backend is PostgreSQL's; SQLite has no server "
                          "connections to kill")
        node = self.start_node("a", limit=10)
        self.wait_for(lambda: self.leader() == "a", SLACK, "node a to become leader")
        ids = self.insert(SleepWorker, 200, sleep=0.15)
        self.wait_for(lambda: self.states().get(JobState.COMPLETED, 0) >= 30, SLACK,
                      "30 jobs to complete")
        killed = 0
        for _ in range(2):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                killed += sum(1 for (ok,) in cursor.fetchall() if ok)
            time.sleep(0.4)
        killed_at = timezone.now()
        self.assertGreaterEqual(killed, 10, "the node's connections were not there to kill")

        self.wait_for(lambda: self.all_done(len(ids)), 45 + SLACK,
                      f"{len(ids)} jobs to complete after the connections were killed")
        self.assertTrue(node.alive(), self.report("the node died"))
        self.assertAllCompleted(ids)
        effects = self.effects()
        self.assertEqual([pk for pk in ids if pk not in effects], [])

        # Still heartbeating and holding the lease, on new connections.
        self.wait_for(lambda: Producer.objects.filter(node="a",
                                                      heartbeat_at__gt=killed_at).exists(),
                      SLACK, "a heartbeat after the connections were killed")
        self.wait_for(lambda: Peer.objects.filter(node__startswith="a:",
                                                  expires_at__gt=killed_at).exists(),
                      SLACK, "the lease to be renewed after the connections were killed")
        late = RecordWorker.enqueue({"late": True}).pk
        self.wait_for(lambda: Job.objects.get(pk=late).state == JobState.COMPLETED, SLACK,
                      "a job inserted afterwards to run")
        log = node.log()
        self.assertRegex(log, r"terminating connection|server closed the connection",
                         "the lost connections were not logged")
        self.assertTrue(node.alive())
        self.stop_nodes(node, within=STOP_SLACK)


class LeaderKilledTests(SurvivalTestCase):
    def test_leader_killed_another_node_takes_over(self):
        """SIGKILL the leader (the node named in django_jobs_peer) while it runs jobs.

        Until its lease expires nobody runs the plugins (a due scheduled job waits); within
        the lease time the other node becomes leader, stages the scheduled job and rescues
        the killed leader's jobs once its producers are stale. The killed node, restarted,
        does not take the lease back. Every job completes.
        """
        a = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: self.leader() == "a", SLACK, "node a to become leader")
        b = self.start_node("b", *RESCUE, limit=4)
        ids = self.insert(SleepWorker, 40, sleep=0.5)
        self.wait_for(lambda: self.states().get(JobState.COMPLETED, 0) >= 8
                      and len(self.executing_on("a")) >= 2, SLACK,
                      "8 jobs to complete while a runs 2 more")
        scheduled = SleepWorker.enqueue({"sleep": 0.1}, schedule_in=3)
        a.kill()
        last_beat = self.last_heartbeat("a")
        lease_expires = Peer.objects.get(name=LEADER_NAME).expires_at
        orphans = self.executing_on("a")
        done_before = set(Job.objects.filter(state=JobState.COMPLETED).values_list("pk",
                                                                                   flat=True))
        self.assertTrue(orphans, self.report("a ran nothing when it was killed"))
        self.assertEqual(self.leader(), "a")

        # The lease is still a's until it expires (a renewed it every LEASE / 5 s, so it runs
        # well past the job's due time): nobody stages the due job meanwhile.
        until_expiry = (lease_expires - timezone.now()).total_seconds() - 0.5
        self.assertGreater(lease_expires - datetime.timedelta(seconds=1), scheduled.scheduled_at)
        self.assertTrue(holds_for(lambda: Job.objects.get(pk=scheduled.pk).state
                                  == JobState.SCHEDULED, until_expiry),
                        self.report("staged while the dead node still held the lease"))
        # Then b, trying every LEASE / 5 s, takes the lease over, and not before it expired.
        self.wait_for(lambda: self.leader() == "b", LEASE + SLACK, "b to become leader")
        took_over = Peer.objects.get(name=LEADER_NAME).started_at
        self.assertGreaterEqual(took_over, lease_expires, "b took a lease that had not expired")

        restarted = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: Job.objects.get(pk=scheduled.pk).state == JobState.COMPLETED,
                      SLACK, "the new leader to stage the scheduled job and a node to run it")
        self.assertGreaterEqual(Job.objects.get(pk=scheduled.pk).attempted_at, took_over)
        self.wait_for(lambda: self.all_done(len(ids) + 1),
                      LEASE + RESCUE_AFTER + LIFELINE_INTERVAL + SLACK,
                      f"the killed leader's {len(orphans)} jobs to be rescued and completed")
        scheduled = scheduled.pk

        self.assertAllCompleted([*ids, scheduled])
        effects = self.effects()
        self.assertEqual([pk for pk in ids if pk not in effects], [])
        self.assertEqual({pk: effects[pk] for pk in done_before if len(effects[pk]) != 1}, {},
                         "jobs completed before the kill ran again")
        self.assertRescued(orphans, last_beat, by=[b, restarted])
        self.assertEqual(self.leader(), "b", "the restarted node took the lease back")
        self.assertIn("node b became leader", b.log())
        self.stop_nodes(b, restarted, within=STOP_SLACK)


class LifelineRaceTests(TransactionTestCase):
    """The lifeline against a node that starts while it runs (in-process, deterministic)."""

    # Regression: the lifeline once read the live producers before the executing jobs, so
    # a node starting between the two reads had its running jobs rescued and run twice.
    def test_jobs_claimed_by_a_node_starting_during_a_rescue_are_left_alone(self):
        engine = get_engine()
        job = RecordWorker.enqueue({"n": 1})
        late = uuid.uuid4()
        claimed = []

        def start_node_and_claim():
            now = producer_row("late", QUEUE, uuid=late).heartbeat_at
            claimed.extend(engine.fetch_jobs(QUEUE, 1, ["late", str(late)], now))

        def between_the_two_reads(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if not claimed and "django_jobs_producer" in sql and "heartbeat_at" in sql:
                join_all([in_thread(start_node_and_claim, name="late node")],
                         what="the late node to claim the job")
            return result

        now = timezone.now()
        with connection.execute_wrapper(between_the_two_reads):
            result = rescue_orphans(now - datetime.timedelta(seconds=RESCUE_AFTER), now)
        self.assertEqual([j.pk for j in claimed], [job.pk], "the late node claimed the job")
        job.refresh_from_db()
        self.assertEqual((job.state, job.attempted_by), (JobState.EXECUTING, ["late", str(late)]),
                         f"a running job of a live node was rescued: {result}")
