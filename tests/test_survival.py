"""Crash and survival tests: real ``runjobs`` processes, killed and restarted.

Every node here is a child process (``python -m django runjobs``) using
tests.subprocess_settings, which points it at this run's test database. Jobs record their side
effect as a row of a raw table (tests/survival_workers.py), so what ran, how often and where is
read back from the database. Children write their output to files in a temporary directory;
the tail of each is part of any failure message. Every child is killed when its test ends,
whatever the outcome.

The lifeline rescues a dead node's jobs once its producers have not heartbeated for
``rescue_after`` (15 s by default) and runs every 5 s. The tests that kill a node start every
node with ``--rescue-after 4`` so that the rescue comes within about 10 s instead of 20.

Set DJANGO_JOBS_SURVIVAL_LOGS to a directory to keep every child's output there.
"""

import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

from django_jobs.engines import get_engine
from django_jobs.insertion import insert_all
from django_jobs.models import Job, JobState, Peer, Producer
from django_jobs.runtime import node as node_module

from .survival_workers import (EFFECT_DDL, EFFECT_TABLE, BlockedWorker, RecordWorker,
                               SleepWorker)

#: Root of the repository holding this file (a fresh clone in CI, wherever it is).
REPO = Path(__file__).resolve().parent.parent
QUEUE = SleepWorker.queue
LEADER_NAME = node_module.LEADER_NAME
LEASE = node_module.LEASE
#: ``--rescue-after`` of the nodes in the tests that kill one (at least 3; the default is 15),
#: and the lifeline's interval: a dead node's jobs are back within RESCUE_AFTER +
#: LIFELINE_INTERVAL (plus a leader takeover when the leader died).
RESCUE_AFTER = 4.0
RESCUE = ("--rescue-after", str(RESCUE_AFTER))
LIFELINE_INTERVAL = 5.0
#: What a stopping node may take beyond the grace period: 2 s for interrupted jobs to settle,
#: then writing outcomes and releasing rows.
STOP_SLACK = 6.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the test process dies (Linux), so that not
    even a killed test run leaves nodes behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class NodeProcess:
    """One ``runjobs`` child process and its output file."""

    def __init__(self, name: str, args: list[str], log_dir: Path, index: int) -> None:
        self.name = name
        self.log_path = log_dir / f"node-{name}-{index}.log"
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = "tests.subprocess_settings"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)
        env["PYTHONUNBUFFERED"] = "1"
        command = [sys.executable, "-m", "django", "runjobs", "--node", name, *args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        text = self.log().splitlines()[-lines:]
        return f"--- node {self.name} (pid {self.pid}, rc {self.process.poll()}) ---\n" + (
            "\n".join(text) or "(no output)")

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class SurvivalTestCase(TransactionTestCase):
    """Starts nodes, waits on the database, and cleans everything up."""

    def setUp(self) -> None:
        self.assertIn("DJANGO_JOBS_TEST_DB", os.environ, "tests/settings.py sets it")
        self.nodes: list[NodeProcess] = []
        tmp = tempfile.TemporaryDirectory(prefix="django_jobs-survival-")
        self.addCleanup(tmp.cleanup)
        self.log_dir = Path(tmp.name)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {EFFECT_TABLE}")  # left by a crashed run
            cursor.execute(EFFECT_DDL)
        self.addCleanup(self._drop_effect_table)
        # Runs first (cleanups are LIFO): no child outlives its test.
        self.addCleanup(self._kill_nodes)

    def _kill_nodes(self) -> None:
        for node in self.nodes:
            try:
                node.kill()
            except Exception:  # pragma: no cover - keep killing the others
                pass
        keep = os.environ.get("DJANGO_JOBS_SURVIVAL_LOGS")
        if keep:  # a directory to copy the children's output to, for debugging
            target = Path(keep) / self.id()
            target.mkdir(parents=True, exist_ok=True)
            for node in self.nodes:
                shutil.copy(node.log_path, target)

    def _drop_effect_table(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {EFFECT_TABLE}")

    # -- nodes --------------------------------------------------------------------------------

    def start_node(self, name: str, *args: str, limit: int = 4,
                   wait: bool = True) -> NodeProcess:
        """Start ``runjobs --node NAME --queue survival=LIMIT ARGS``; wait for its banner."""
        node = NodeProcess(name, ["--queue", f"{QUEUE}={limit}", *args], self.log_dir,
                           len(self.nodes))
        self.nodes.append(node)
        if wait:
            self.wait_for(lambda: f"node {name} started" in node.log(), 30,
                          f"node {name} did not start")
        return node

    def stop_nodes(self, *nodes: NodeProcess, within: float) -> float:
        """SIGTERM ``nodes`` together; assert each exits by itself, with status 0, within
        ``within`` s. Return how long they took."""
        started = time.monotonic()
        for node in nodes:
            node.terminate()
        for node in nodes:
            rc = node.wait(max(0.1, started + within - time.monotonic()))
            self.assertIsNotNone(rc, self.report(f"node {node.name} still running {within} s "
                                                 f"after SIGTERM"))
            self.assertEqual(rc, 0, self.report(f"node {node.name} exited with {rc}"))
        return time.monotonic() - started

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
                      within: float | None = None) -> None:
        """Each of ``orphans`` was rescued, no earlier than RESCUE_AFTER s after its node's
        last heartbeat (and, with ``within``, no later than that many seconds after it)."""
        for job in Job.objects.filter(pk__in=orphans):
            rescues = [e for e in job.errors if e["error"].startswith("Rescued")]
            self.assertEqual(len(rescues), 1, job.errors)
            after = (datetime.datetime.fromisoformat(rescues[0]["at"])
                     - last_beat).total_seconds()
            self.assertGreaterEqual(after, RESCUE_AFTER, "rescued while still fresh")
            if within is not None:
                self.assertLessEqual(after, within, "rescued late")

    def report(self, message: str) -> str:
        """``message`` with the job counts and the tail of every child's output."""
        try:
            counts = self.states()
        except Exception as exc:  # the database itself may be the problem
            counts = f"(unreadable: {exc!r})"
        return "\n".join([message, f"job states: {counts}, leader: {self._leader_or_none()}",
                          *(node.tail() for node in self.nodes)])

    def _leader_or_none(self):
        try:
            return self.leader()
        except Exception:
            return None

    def wait_for(self, predicate, timeout: float, message: str, interval: float = 0.1) -> float:
        """Poll ``predicate`` until true; fail with a report after ``timeout`` s. Return the
        seconds waited."""
        started = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                self.fail(self.report(f"{message} (waited {timeout} s)"))
            time.sleep(interval)

    def all_done(self, total: int) -> bool:
        return Job.objects.filter(state=JobState.COMPLETED).count() == total

    def insert(self, worker, count: int, **args) -> list[int]:
        return [job.pk for job in insert_all(worker.new(dict(args, n=i)) for i in range(count))]

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
        self.wait_for(lambda: self.leader() == "a", 5, "node a did not become leader")
        ids = self.insert(SleepWorker, 24, sleep=0.4)
        self.wait_for(lambda: self.states().get(JobState.COMPLETED, 0) >= 4
                      and len(self.executing_on("a")) >= 2, 20, "no jobs ran")
        first.kill()
        killed_at = time.monotonic()
        last_beat = self.last_heartbeat("a")
        orphans = self.executing_on("a")
        done_before = set(Job.objects.filter(state=JobState.COMPLETED).values_list("pk",
                                                                                   flat=True))
        self.assertTrue(orphans, self.report("nothing was executing when the node was killed"))

        second = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: self.leader() == "a", 5, "the restarted node a is not leader")
        self.wait_for(lambda: self.all_done(len(ids)),
                      RESCUE_AFTER + LIFELINE_INTERVAL + 15,
                      "the killed node's jobs were not rescued and completed")
        recovered_in = time.monotonic() - killed_at

        self.assertAllCompleted(ids)
        effects = self.effects()
        self.assertEqual(sorted(pk for pk in ids if pk not in effects), [],
                         self.report("jobs completed without their side effect"))
        self.assertEqual({pk: effects[pk] for pk in done_before if len(effects[pk]) != 1}, {},
                         "jobs completed before the kill ran again")
        # Rescued once the dead producers were stale, at the next lifeline run.
        self.assertRescued(orphans, last_beat, within=RESCUE_AFTER + LIFELINE_INTERVAL + 3)
        for job in Job.objects.filter(pk__in=orphans):
            self.assertEqual(job.attempt, 2, "the rescued attempt counts, like Oban's")
        self.assertLess(recovered_in, RESCUE_AFTER + LIFELINE_INTERVAL + 5)
        self.assertTrue(second.alive(), self.report("the restarted node died"))
        self.stop_nodes(second, within=10)


class SigtermTests(SurvivalTestCase):
    GRACE = 2.0

    def test_sigterm_finishes_running_jobs_and_puts_back_the_rest(self):
        """SIGTERM: no more fetching; running jobs finish within the grace period; a job
        still running after it is put back to available with its attempt not counted; the
        process exits by itself with nothing left executing, its producer rows and the lease
        released."""
        node = self.start_node("a", "--grace", str(self.GRACE), limit=4)
        self.wait_for(lambda: self.leader() == "a", 5, "node a did not become leader")
        jobs = insert_all([*(SleepWorker.new({"sleep": 0.5, "n": i}) for i in range(3)),
                           SleepWorker.new({"sleep": 60}),
                           *(RecordWorker.new({"n": i}) for i in range(3))])
        short, long, waiting = [j.pk for j in jobs[:3]], jobs[3].pk, [j.pk for j in jobs[4:]]
        self.wait_for(lambda: sorted(self.executing_on("a")) == sorted([*short, long]), 10,
                      "the four first jobs did not start")

        took = self.stop_nodes(node, within=self.GRACE + STOP_SLACK)

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
        self.wait_for(lambda: self.executing_on("a") == [blocked], 10, "the job did not start")
        time.sleep(0.2)  # inside time.sleep(30) by now
        node.terminate()
        # Whatever happens to the process, the job is put back, not left executing.
        self.wait_for(lambda: Job.objects.get(pk=blocked).state == JobState.AVAILABLE,
                      0.5 + STOP_SLACK, "the blocked job was not put back")
        job = Job.objects.get(pk=blocked)
        self.assertEqual(job.attempt, 0)
        self.assertIn("shut down", job.errors[-1]["error"])
        rc = node.wait(2)
        self.assertEqual(rc, 0, self.report("runjobs did not exit after putting the job back"))


class ThreeNodesTests(SurvivalTestCase):
    JOBS = 5000

    def test_three_nodes_run_each_job_exactly_once(self):
        """Three nodes on the same 5,000 jobs: every side effect happens exactly once."""
        nodes = [self.start_node(name, "-v", "0", limit=10, wait=False) for name in "abc"]
        for node in nodes:
            self.wait_for(lambda node=node: f"node {node.name} started" in node.log(), 30,
                          f"node {node.name} did not start")
        ids = self.insert(RecordWorker, self.JOBS)
        self.wait_for(lambda: self.all_done(self.JOBS), 90, "the jobs did not all complete",
                      interval=0.2)

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
        self.stop_nodes(*nodes, within=10)
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
        self.wait_for(lambda: self.leader() == "a", 5, "node a did not become leader")
        ids = self.insert(SleepWorker, 200, sleep=0.15)
        self.wait_for(lambda: self.states().get(JobState.COMPLETED, 0) >= 30, 20,
                      "no jobs ran")
        killed = 0
        for _ in range(2):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                killed += sum(1 for (ok,) in cursor.fetchall() if ok)
            time.sleep(0.4)
        killed_at = timezone.now()
        self.assertGreaterEqual(killed, 10, "the node's connections were not there to kill")

        self.wait_for(lambda: self.all_done(len(ids)), 45,
                      "the jobs did not complete after the connections were killed")
        self.assertTrue(node.alive(), self.report("the node died"))
        self.assertAllCompleted(ids)
        effects = self.effects()
        self.assertEqual([pk for pk in ids if pk not in effects], [])

        # Still heartbeating and holding the lease, on new connections.
        self.wait_for(lambda: Producer.objects.filter(node="a",
                                                      heartbeat_at__gt=killed_at).exists(),
                      5, "no heartbeat after the connections were killed")
        self.wait_for(lambda: Peer.objects.filter(node__startswith="a:",
                                                  expires_at__gt=killed_at).exists(),
                      5, "the lease was not renewed after the connections were killed")
        late = RecordWorker.enqueue({"late": True}).pk
        self.wait_for(lambda: Job.objects.get(pk=late).state == JobState.COMPLETED, 5,
                      "a job inserted afterwards did not run")
        log = node.log()
        self.assertRegex(log, r"terminating connection|server closed the connection",
                         "the lost connections were not logged")
        self.assertTrue(node.alive())
        self.stop_nodes(node, within=10)


class LeaderKilledTests(SurvivalTestCase):
    def test_leader_killed_another_node_takes_over(self):
        """SIGKILL the leader (the node named in django_jobs_peer) while it runs jobs.

        Until its lease expires nobody runs the plugins (a due scheduled job waits); within
        the lease time the other node becomes leader, stages the scheduled job and rescues
        the killed leader's jobs once its producers are stale. The killed node, restarted,
        does not take the lease back. Every job completes.
        """
        a = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: self.leader() == "a", 5, "node a did not become leader")
        b = self.start_node("b", *RESCUE, limit=4)
        ids = self.insert(SleepWorker, 40, sleep=0.5)
        self.wait_for(lambda: self.states().get(JobState.COMPLETED, 0) >= 8
                      and len(self.executing_on("a")) >= 2, 20, "a ran no jobs")
        scheduled = SleepWorker.enqueue({"sleep": 0.1}, schedule_in=3).pk
        a.kill()
        killed_at = time.monotonic()
        last_beat = self.last_heartbeat("a")
        orphans = self.executing_on("a")
        done_before = set(Job.objects.filter(state=JobState.COMPLETED).values_list("pk",
                                                                                   flat=True))
        self.assertTrue(orphans, self.report("a ran nothing when it was killed"))
        self.assertEqual(self.leader(), "a")

        # The lease is still a's for a while: nobody stages the due job.
        time.sleep(max(0.0, killed_at + 5 - time.monotonic()))
        self.assertEqual(Job.objects.get(pk=scheduled).state, JobState.SCHEDULED,
                         self.report("staged while the dead node still held the lease"))
        # The lease runs LEASE s from a's last renewal; b tries every LEASE / 5 s.
        self.wait_for(lambda: self.leader() == "b",
                      LEASE + LEASE / 5 + 2 - (time.monotonic() - killed_at),
                      "b did not become leader within the lease time")
        took_over = Peer.objects.get(name=LEADER_NAME).started_at

        restarted = self.start_node("a", *RESCUE, limit=4)
        self.wait_for(lambda: Job.objects.get(pk=scheduled).state == JobState.COMPLETED, 5,
                      "the new leader did not stage the scheduled job")
        self.assertGreaterEqual(Job.objects.get(pk=scheduled).attempted_at, took_over)
        self.wait_for(lambda: self.all_done(len(ids) + 1),
                      LEASE + RESCUE_AFTER + LIFELINE_INTERVAL + 10
                      - (time.monotonic() - killed_at),
                      "the killed leader's jobs were not rescued and completed")

        self.assertAllCompleted([*ids, scheduled])
        effects = self.effects()
        self.assertEqual([pk for pk in ids if pk not in effects], [])
        self.assertEqual({pk: effects[pk] for pk in done_before if len(effects[pk]) != 1}, {},
                         "jobs completed before the kill ran again")
        self.assertRescued(orphans, last_beat)
        self.assertEqual(self.leader(), "b", "the restarted node took the lease back")
        self.assertIn("node b became leader", b.log())
        self.stop_nodes(b, restarted, within=10)


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
            try:
                now = timezone.now()
                Producer.objects.create(uuid=late, node="late", queue=QUEUE, limit=1,
                                        started_at=now, heartbeat_at=now)
                claimed.extend(engine.fetch_jobs(QUEUE, 1, ["late", str(late)], now))
            finally:
                connection.close()

        def between_the_two_reads(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if not claimed and "django_jobs_producer" in sql and "heartbeat_at" in sql:
                thread = threading.Thread(target=start_node_and_claim)
                thread.start()
                thread.join(10)
            return result

        now = timezone.now()
        with connection.execute_wrapper(between_the_two_reads):
            result = engine.rescue_orphans(now - datetime.timedelta(seconds=RESCUE_AFTER), now)
        self.assertEqual([j.pk for j in claimed], [job.pk], "the late node claimed the job")
        job.refresh_from_db()
        self.assertEqual((job.state, job.attempted_by), (JobState.EXECUTING, ["late", str(late)]),
                         f"a running job of a live node was rescued: {result}")
