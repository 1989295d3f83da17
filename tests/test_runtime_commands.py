"""``manage.py runjobs`` and ``manage.py jobs``."""

import io
import logging
import signal
import time

from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from django_jobs.models import Job, Producer
from django_jobs.runtime import node as runtime_node

from . import runtime_workers as w
from .helpers import reload, set_state, wait_for_state
from .processes import run_django
from .runtime_workers import RuntimeTestCase, record, wait_until
from .waits import holds_for, time_limit


class CommandTestCase(RuntimeTestCase):
    def setUp(self):
        super().setUp()
        # runjobs installs SIGTERM/SIGINT handlers and configures the django_jobs logger:
        # put both back after each test.
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        logger = logging.getLogger("django_jobs")
        level, own = logger.level, list(logger.handlers)

        def restore():
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            logger.setLevel(level)
            logger.handlers[:] = own

        self.addCleanup(restore)

    def call(self, *args):
        out = io.StringIO()
        call_command(*args, stdout=out, stderr=io.StringIO())
        return out.getvalue()


class RunjobsTests(CommandTestCase):
    def assertNothingStarted(self):
        self.assertEqual(runtime_node.local_nodes, [])
        self.assertEqual(Producer.objects.count(), 0)
        self.assertIs(signal.getsignal(signal.SIGTERM), self.sigterm)

    def setUp(self):
        super().setUp()
        self.sigterm = signal.getsignal(signal.SIGTERM)

    def test_bad_arguments_fail_before_anything_starts(self):
        for args in (["--queue", "bad"], ["--queue", "x=0"], ["--queue", "x=-2"],
                     ["--queue", "x=abc"], ["--queue", "=3"], ["--queue", " x =3"],
                     ["--grace", "-1"], ["--grace", "soon"], ["--rescue-after", "1"],
                     ["--unknown-option"]):
            with self.subTest(args=args), self.assertRaises((CommandError, SystemExit)):
                self.call("runjobs", *args)
            self.assertNothingStarted()

    def test_error_message_names_the_problem(self):
        with self.assertRaisesMessage(CommandError, "NAME=LIMIT"):
            self.call("runjobs", "--queue", "bad")
        with self.assertRaisesMessage(CommandError, "at least 1"):
            self.call("runjobs", "--queue", "x=0")

    def test_stop_when_empty_runs_the_jobs_and_returns(self):
        jobs = [w.RecordWorker.enqueue({"n": i}, queue="cmd") for i in range(20)]
        jobs.append(w.AsyncReturnWorker.enqueue({"x": 1}, queue="cmd2"))
        other = w.ReturnWorker.enqueue({}, queue="not-run")
        with time_limit(60, "runjobs --stop-when-empty to return"):
            out = self.call("runjobs", "--queue", "cmd=4", "-q", "cmd2=1", "--stop-when-empty",
                            "--no-plugins", "--node", "cmd-node", "--grace", "1",
                            "--verbosity", "0")
        self.assertEqual(set(Job.objects.filter(pk__in=[j.pk for j in jobs])
                             .values_list("state", flat=True)), {"completed"})
        self.assertEqual(Job.objects.get(pk=other.pk).state, "available")
        self.assertNothingExecuting()
        self.assertEqual(Producer.objects.count(), 0)
        self.assertEqual(runtime_node.local_nodes, [])
        self.assertIn("cmd-node", out)
        self.assertIn("cmd=4", out)
        self.assertIn("cmd2=1", out)
        self.assertEqual(sorted(record.order), list(range(20)))
        self.assertLessEqual(record.max_current, 4)

    def test_stop_when_empty_with_nothing_to_do(self):
        with time_limit(60, "runjobs --stop-when-empty to return"):
            out = self.call("runjobs", "-q", "empty=1", "--stop-when-empty", "--no-plugins",
                            "--verbosity", "0")
        self.assertIn("empty=1", out)
        self.assertEqual(Producer.objects.count(), 0)

    def test_queues_from_settings(self):
        with override_settings(DJANGO_JOBS={"QUEUES": {"fromsettings": 2}}), \
                time_limit(60, "runjobs --stop-when-empty to return"):
            out = self.call("runjobs", "--stop-when-empty", "--no-plugins", "--verbosity", "0")
        self.assertIn("fromsettings=2", out)

    def test_no_queues(self):
        with override_settings(DJANGO_JOBS={"QUEUES": {}}):
            with self.assertRaisesMessage(CommandError, "no queues"):
                self.call("runjobs")
        self.assertNothingStarted()

    def test_manual_testing_mode_refuses_to_run(self):
        with override_settings(DJANGO_JOBS={"QUEUES": {"default": 1}, "TESTING": "manual"}):
            with self.assertRaises(CommandError):
                self.call("runjobs", "--stop-when-empty")
        self.assertNothingStarted()


def table(output):
    """``jobs stats`` output as {queue: {state: count}}, and the header's columns."""
    lines = output.splitlines()
    header = lines[0].split()
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        parts = line.split()
        if len(parts) == len(header):
            rows[parts[0]] = dict(zip(header[1:], map(int, parts[1:]), strict=True))
    return header, rows


class JobsCommandTests(CommandTestCase):
    def test_stats_table(self):
        now = timezone.now()
        for _ in range(3):
            w.ReturnWorker.enqueue({}, queue="stats-a")
        w.ReturnWorker.enqueue({}, queue="stats-a", schedule_in=60)
        set_state(w.ReturnWorker.enqueue({}, queue="stats-b"), "completed", completed_at=now)
        out = self.call("jobs", "stats")
        header, rows = table(out)
        self.assertEqual(header, ["queue", "available", "scheduled", "suspended", "executing",
                                  "retryable", "completed", "discarded", "cancelled"])
        self.assertEqual(rows["stats-a"]["available"], 3)
        self.assertEqual(rows["stats-a"]["scheduled"], 1)
        self.assertEqual(rows["stats-a"]["completed"], 0)
        self.assertEqual(rows["stats-b"]["completed"], 1)
        self.assertEqual(sum(rows["stats-b"].values()), 1)
        self.assertIn("producers", out)

    def test_stats_lists_running_producers(self):
        self.start_node({"control": 3}, name="stats-node")
        out = self.call("jobs", "stats")
        self.assertIn("(no jobs)", out)
        self.assertIn("stats-node / control / 3 / no", out)

    def test_stats_watch_needs_positive_seconds(self):
        with self.assertRaises(CommandError):
            self.call("jobs", "stats", "--watch", "0")

    def test_pause_resume_scale_a_running_node(self):
        node = self.start_node({"control": 1})
        self.assertIn("paused queue control: 1 producer", self.call("jobs", "pause", "control"))
        self.assertTrue(node.producers["control"].paused)
        self.assertTrue(Producer.objects.get(node=node.name).paused)
        self.assertIn("resumed queue control: 1 producer",
                      self.call("jobs", "resume", "control"))
        self.assertFalse(node.producers["control"].paused)
        out = self.call("jobs", "scale", "control", "3")
        self.assertIn("scaled queue control to 3: 1 producer", out)
        self.assertEqual(Producer.objects.get(node=node.name).limit, 3)
        for _ in range(4):
            w.GateWorker.enqueue({})
        self.assertRunningAtOnce(3)
        record.gate.set()

    def test_pause_by_node(self):
        node = self.start_node({"control": 1})
        out = self.call("jobs", "pause", "control", "--node", "elsewhere")
        self.assertIn("no running producer", out)
        self.assertFalse(node.producers["control"].paused)
        self.call("jobs", "pause", "control", "--node", node.name)
        self.assertTrue(node.producers["control"].paused)

    def test_pause_unknown_queue_says_so(self):
        out = self.call("jobs", "pause", "nobody-runs-this")
        self.assertIn("no running producer", out)

    def test_scale_validates_limit(self):
        for bad in ("0", "-1", "x", "2.5", ""):
            with self.subTest(limit=bad), self.assertRaises(CommandError):
                self.call("jobs", "scale", "control", bad)
        with self.assertRaises(CommandError):
            self.call("jobs", "scale", "control")

    def test_missing_or_unknown_action(self):
        for args in ([], ["explode"], ["pause"], ["cancel"], ["retry"]):
            with self.subTest(args=args), self.assertRaises(CommandError):
                self.call("jobs", *args)

    def test_bad_queue_name_is_a_command_error(self):
        with self.assertRaises(CommandError):
            self.call("jobs", "pause", " padded ")

    def test_cancel_retry_delete_by_id(self):
        waiting = w.ReturnWorker.enqueue({})
        done = set_state(w.ReturnWorker.enqueue({}), "completed", completed_at=timezone.now())
        out = self.call("jobs", "cancel", str(waiting.pk), str(done.pk))
        self.assertIn("cancel: 1 of 2 jobs changed", out)
        self.assertEqual(Job.objects.get(pk=waiting.pk).state, "cancelled")
        out = self.call("jobs", "retry", str(waiting.pk), str(done.pk), "999999")
        self.assertIn("retry: 2 of 3 jobs changed", out)
        self.assertEqual(set(Job.objects.values_list("state", flat=True)), {"available"})
        out = self.call("jobs", "delete", str(waiting.pk))
        self.assertIn("delete: 1 of 1 jobs changed", out)
        self.assertFalse(Job.objects.filter(pk=waiting.pk).exists())

    def test_cancel_stops_an_executing_job(self):
        self.start_node({"control": 1})
        job = w.GateWorker.enqueue({})
        wait_until(lambda: job.pk in record.started, what="the job to start")
        self.assertIn("cancel: 1 of 1 jobs changed", self.call("jobs", "cancel", str(job.pk)))
        wait_until(lambda: record.exited.get(job.pk) == "JobCancelled",
                   what="the job to be stopped by the cancel")
        self.assertEqual(wait_for_state(job, "cancelled").state, "cancelled")

    def test_ids_must_be_integers(self):
        for action in ("cancel", "retry", "delete"):
            for bad in ("abc", "-1", "1.5"):
                with self.subTest(action=action, id=bad), self.assertRaises(CommandError):
                    self.call("jobs", action, bad)


class CrossProcessTests(CommandTestCase):
    def jobs_command(self, *args):
        """``manage.py jobs ARGS`` in a child process on this run's test database."""
        result = run_django("jobs", *args, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_pause_and_cancel_from_another_process(self):
        node = self.start_node({"control": 2})
        wait_for_state(w.RecordWorker.enqueue({"n": 0}, queue="control"), "completed")
        out = self.jobs_command("pause", "control")
        self.assertIn("paused queue control: 1 producer", out)
        wait_until(lambda: node.producers["control"].paused, what="the node to be paused")
        time.sleep(0.05)  # a fetch under way when the pause came may still claim jobs
        job = w.GateWorker.enqueue({})
        self.assertTrue(holds_for(lambda: reload(job).state == "available", 0.8),
                        "a paused queue fetched a job")
        self.jobs_command("resume", "control")
        wait_until(lambda: job.pk in record.started, what="the job to start after the resume")
        self.jobs_command("cancel", str(job.pk))
        wait_until(lambda: record.exited.get(job.pk) == "JobCancelled",
                   what="the job to be stopped by a cancel from another process")
        self.assertEqual(wait_for_state(job, "cancelled").state, "cancelled")
        self.assertIn("control", self.jobs_command("stats"))
