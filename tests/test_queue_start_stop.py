"""Queues started and stopped at run time (``django_jobs.start_queue`` / ``stop_queue``,
``manage.py jobs start-queue`` / ``stop-queue``) on running ``runjobs`` child processes.

The nodes run only the ``survival`` queue at start (tests/survival_workers.py: each job records
a row naming the job and the node that ran it); the tests start and stop the ``extra`` queue on
them and read what happened back from the database.
"""

import datetime
import os

from django.contrib.auth.models import User
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.urls import reverse
from django.utils import timezone

import django_jobs
from django_jobs.exceptions import InvalidJobError
from django_jobs.models import Producer, QueueCommand

from .helpers import describe_jobs, producer_row, reload, wait_for_state
from .processes import RunjobsMixin, run_django
from .survival_workers import EFFECT_DDL, EFFECT_TABLE, SleepWorker
from .waits import holds_for, wait_until

EXTRA = "extra"
#: Generous bounds for a loaded machine; a command takes effect within about a second.
APPLIED = 20.0


class QueueCommandTestCase(RunjobsMixin, TransactionTestCase):
    def setUp(self) -> None:
        self.assertIn("DJANGO_JOBS_TEST_DB", os.environ, "tests/settings.py sets it")
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {EFFECT_TABLE}")
            cursor.execute(EFFECT_DDL)
        self.addCleanup(self._drop_effect_table)

    def _drop_effect_table(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {EFFECT_TABLE}")

    def start_node(self, name: str, *args: str):
        return self.start_runjobs(name, "--queue", "survival=2", *args)

    def effects(self, job) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT node FROM {EFFECT_TABLE} WHERE job_id = %s", [job.pk])
            return [row[0] for row in cursor.fetchall()]

    def rows(self, queue: str = EXTRA) -> list[tuple[str, int, dict]]:
        return sorted(Producer.objects.filter(queue=queue).values_list("node", "limit", "meta"))

    def wait_rows(self, expected, what: str, queue: str = EXTRA) -> None:
        wait_until(lambda: self.rows(queue) == expected, APPLIED, what=what,
                   describe=lambda: self.runjobs_report(f"rows: {self.rows(queue)}"))

    def wait_job(self, job, *states: str):
        try:
            return wait_for_state(job, *states, timeout=APPLIED)
        except AssertionError as exc:
            raise AssertionError(self.runjobs_report(f"{exc}\n{describe_jobs()}")) from None


class StartStopTests(QueueCommandTestCase):
    def test_start_then_stop_on_every_node(self):
        # The lifeline (every 5 s) takes the jobs of producers silent for 3 s: the stopped
        # producer's last job runs longer than that, so only its heartbeat keeps it.
        node = self.start_node("a", "--rescue-after", "3")
        waiting = SleepWorker.enqueue({"sleep": 0}, queue=EXTRA)
        self.assertTrue(holds_for(lambda: reload(waiting).state == "available", 1.5),
                        "a queue no node runs ran a job")

        self.assertEqual(django_jobs.start_queue(EXTRA, 3), 1)
        self.wait_job(waiting, "completed")
        self.wait_rows([("a", 3, {})], "the started queue's producer row")
        self.assertEqual(self.effects(waiting), ["a"])

        # Stopping: the running job finishes, nothing more is fetched.
        long = SleepWorker.enqueue({"sleep": 7}, queue=EXTRA)
        self.wait_job(long, "executing")
        self.assertEqual(django_jobs.stop_queue(EXTRA), 1)
        self.wait_rows([("a", 3, {"stopping": True})], "the producer to show as stopping")
        later = SleepWorker.enqueue({"sleep": 0}, queue=EXTRA)
        self.wait_job(long, "completed")
        self.wait_rows([], "the stopped producer's row to go")
        self.assertEqual(reload(later).state, "available", "a stopped queue fetched a job")
        self.assertTrue(holds_for(lambda: reload(later).state == "available", 1.5),
                        "a stopped queue fetched a job")
        # Its last job ran once, to the end: the lifeline did not take it for a dead node's.
        long = reload(long)
        self.assertEqual((long.attempt, long.errors, self.effects(long)), (1, [], ["a"]))
        # The node runs on: its other queue still works.
        self.wait_job(SleepWorker.enqueue({"sleep": 0}), "completed")
        self.assertTrue(node.alive())
        self.stop_runjobs(node, within=30)
        self.assertEqual(Producer.objects.count(), 0)

    def test_one_node_by_name_from_the_command_line(self):
        a, b = self.start_node("a"), self.start_node("b")
        out = run_django("jobs", "start-queue", EXTRA, "--limit", "2", "--node", "b")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("starting queue extra with limit 2 on 1 nodes named 'b'", out.stdout)
        self.wait_rows([("b", 2, {})], "node b to start the queue")
        self.assertTrue(holds_for(lambda: self.rows() == [("b", 2, {})], 1.5),
                        f"node a started the queue too: {self.rows()}")
        job = SleepWorker.enqueue({"sleep": 0}, queue=EXTRA)
        self.wait_job(job, "completed")
        self.assertEqual(self.effects(job), ["b"])
        stats = run_django("jobs", "stats")
        self.assertIn("b / extra / 2 / no", stats.stdout)

        out = run_django("jobs", "stop-queue", EXTRA, "--node", "b")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("stopping queue extra (running jobs finish): 1 producer", out.stdout)
        self.wait_rows([], "node b to stop the queue")
        self.assertNotIn("/ extra /", run_django("jobs", "stats").stdout)
        self.stop_runjobs(a, b, within=30)

    def test_starting_a_running_queue_scales_it(self):
        node = self.start_node("a")
        self.assertEqual(django_jobs.start_queue("survival", 5), 1)
        self.wait_rows([("a", 5, {})], "the running queue to take the new limit", "survival")
        self.wait_job(SleepWorker.enqueue({"sleep": 0}), "completed")
        self.stop_runjobs(node, within=30)

    def test_a_started_queue_does_not_survive_a_restart(self):
        node = self.start_node("a")
        django_jobs.start_queue(EXTRA, 2)
        self.wait_rows([("a", 2, {})], "the started queue's producer row")
        self.stop_runjobs(node, within=30)
        again = self.start_node("a")
        self.assertTrue(holds_for(lambda: self.rows() == [], 2.0),
                        "a restarted node applied a command given before its start")
        self.assertEqual(self.rows("survival"), [("a", 2, {})])
        self.stop_runjobs(again, within=30)

    def test_command_line_validates_before_anything_is_recorded(self):
        for args, message in [
                (["start-queue", EXTRA, "--limit", "0"], "expected an integer of at least 1"),
                (["start-queue", EXTRA], "--limit"),
                (["start-queue", "", "--limit", "1"], "queue"),
                (["stop-queue", EXTRA, "--node", ""], "node name cannot be empty")]:
            out = run_django("jobs", *args)
            self.assertNotEqual(out.returncode, 0, args)
            self.assertIn(message, out.stderr, args)
        self.assertEqual(QueueCommand.objects.count(), 0)


class ValidationTests(TestCase):
    def test_bad_arguments_are_refused(self):
        for call in [lambda: django_jobs.start_queue(EXTRA, 0),
                     lambda: django_jobs.start_queue(EXTRA, "3"),
                     lambda: django_jobs.start_queue(EXTRA, True),
                     lambda: django_jobs.start_queue("", 1),
                     lambda: django_jobs.start_queue(EXTRA, 1, node=""),
                     lambda: django_jobs.stop_queue(" "),
                     lambda: django_jobs.stop_queue(EXTRA, node=3)]:
            with self.assertRaises(InvalidJobError):
                call()
        self.assertEqual(QueueCommand.objects.count(), 0)

    def test_an_unknown_node_is_not_an_error_and_counts_nothing(self):
        producer_row("a", "survival")
        self.assertEqual(django_jobs.start_queue(EXTRA, 2, node="nobody"), 0)
        self.assertEqual(django_jobs.start_queue(EXTRA, 2), 1)
        self.assertEqual(django_jobs.stop_queue(EXTRA), 0)
        self.assertEqual([(c.action, c.node, c.limit) for c in QueueCommand.objects.order_by("id")],
                         [("start", "nobody", 2), ("start", "", 2), ("stop", "", None)])

    def test_old_commands_are_forgotten(self):
        old = QueueCommand.objects.create(
            action="stop", queue=EXTRA,
            created_at=timezone.now() - datetime.timedelta(seconds=QueueCommand.TTL + 1))
        django_jobs.stop_queue(EXTRA)
        self.assertFalse(QueueCommand.objects.filter(pk=old.pk).exists())
        self.assertEqual(QueueCommand.objects.count(), 1)


class AdminTests(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
        self.url = reverse("admin:django_jobs_job_queues")

    def test_start_and_stop_buttons_record_commands(self):
        response = self.client.post(self.url, {"action": "start", "queue": EXTRA, "limit": "4",
                                               "node": "b"}, follow=True)
        self.assertContains(response, "Starting queue &#x27;extra&#x27; with limit 4 on b")
        self.client.post(self.url, {"action": "stop", "queue": EXTRA})
        self.assertEqual([(c.action, c.node, c.limit) for c in QueueCommand.objects.order_by("id")],
                         [("start", "b", 4), ("stop", "", None)])
        response = self.client.post(self.url, {"action": "start", "queue": EXTRA, "limit": "0"},
                                    follow=True)
        self.assertContains(response, "must be an integer of at least 1, not 0")
        self.assertEqual(QueueCommand.objects.count(), 2)

    def test_a_stopping_producer_shows_as_stopping(self):
        producer_row("a", EXTRA, limit=3, meta={"stopping": True})
        producer_row("b", EXTRA, limit=2)
        page = self.client.get(self.url).content.decode()
        self.assertIn('name="action" value="start"', page)
        self.assertEqual(page.count(">stopping</span>"), 1)
        self.assertIn("Stop everywhere", page)

    def test_commands_have_a_read_only_admin_page(self):
        django_jobs.start_queue(EXTRA, 2, node="b")
        page = self.client.get(reverse("admin:django_jobs_queuecommand_changelist"))
        self.assertContains(page, "extra")
        self.assertNotContains(page, "queuecommand/add/")
