"""``job.report_progress(value)``: kept in ``meta["progress"]``, written to the row while the
job runs (throttled, the last value before the outcome), the ``job_progress`` signal, and the
admin's progress bars."""

import tempfile
from pathlib import Path

from django.contrib.auth.models import User
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_jobs import signals
from django_jobs.exceptions import InvalidJobError
from django_jobs.models import Job
from django_jobs.pro.recorded import fetch_recorded
from django_jobs.testing import drain_queue, perform_job, with_testing_mode

from .helpers import describe_jobs, reload, set_state, wait_for_state
from .processes import RunjobsMixin
from .progress_workers import GatedProgressWorker, ProgressWorker, RecordedProgressWorker
from .waits import wait_until


class Received:
    """Connects to ``job_progress`` for the test; ``calls`` holds (sender, job id, value)."""

    def __init__(self, test) -> None:
        self.calls = []
        signals.job_progress.connect(self.receive)
        test.addCleanup(signals.job_progress.disconnect, self.receive)

    def receive(self, sender, job, progress, **kwargs):
        self.calls.append((sender, job.pk, progress))


def progress_writes(queries) -> int:
    """The statements among ``queries`` that wrote a progress (JSON_SET, or jsonb_set)."""
    return sum("json_set" in q["sql"].lower() or "jsonb_set" in q["sql"].lower()
               for q in queries)


class ValueTests(TestCase):
    def test_numbers_within_0_and_100_and_any_json_value(self):
        job = ProgressWorker.new({})
        for value in [0, 12.5, 100, "uploading", {"done": 3, "of": 7}, [1, 2], True, None]:
            job.report_progress(value)
            self.assertEqual(job.meta["progress"], value)
            self.assertEqual(job.progress, value)
        job.report_progress(40)
        self.assertEqual(job.progress_percent, 40)
        job.report_progress({"step": 2})
        self.assertIsNone(job.progress_percent)

    def test_bad_values_are_refused(self):
        job = ProgressWorker.new({})
        for value in [-1, 100.5, float("nan"), float("inf"), object(), {"when": {1, 2}}]:
            with self.assertRaises(InvalidJobError, msg=repr(value)):
                job.report_progress(value)
        self.assertNotIn("progress", job.meta)


class InMemoryTests(TestCase):
    def test_inline_mode_sets_meta_and_sends_the_signal(self):
        received = Received(self)
        with with_testing_mode("inline"):
            job = ProgressWorker.enqueue({"steps": [10, 20, 30]})
        self.assertEqual((job.state, job.meta["progress"]), ("completed", 30))
        self.assertFalse(Job.objects.exists())
        self.assertEqual([(s, v) for s, _, v in received.calls],
                         [(ProgressWorker, 10), (ProgressWorker, 20), (ProgressWorker, 30)])

    def test_perform_job_writes_nothing(self):
        received = Received(self)
        with CaptureQueriesContext(connection) as queries:
            perform_job(ProgressWorker, {"steps": [10, 90]})
        self.assertEqual(progress_writes(queries.captured_queries), 0)
        self.assertEqual([v for _, _, v in received.calls], [10, 90])


class WrittenTests(TestCase):
    """Jobs run by ``drain_queue``: the same executor and acks as ``runjobs``."""

    def drain(self, worker, **args):
        job = worker.enqueue(args)
        with CaptureQueriesContext(connection) as queries:
            drain_queue("progress")
        return reload(job), progress_writes(queries.captured_queries)

    def test_the_last_value_is_written_before_the_outcome(self):
        # 100 reports at once: the first is written, the rest wait for the throttle, and the
        # last is written when perform returns; the ack keeps it.
        received = Received(self)
        job, writes = self.drain(ProgressWorker, steps=list(range(1, 101)))
        self.assertEqual((job.state, job.meta["progress"]), ("completed", 100))
        self.assertEqual(writes, 2)
        self.assertEqual(len(received.calls), 100)
        self.assertEqual(received.calls[-1], (ProgressWorker, job.pk, 100))

    def test_outcomes_that_write_meta_keep_the_progress(self):
        with self.assertLogs("django_jobs.executor", "WARNING"):  # snoozed, then failed
            snoozed, _ = self.drain(ProgressWorker, steps=[5, 45], then="snooze")
            job, _ = self.drain(ProgressWorker, steps=[5, 55], then="fail")
        self.assertEqual((snoozed.state, snoozed.meta["progress"], snoozed.meta["snoozed"]),
                         ("scheduled", 45, 1))
        self.assertEqual((job.state, job.meta["progress"]), ("retryable", 55))
        job, _ = self.drain(RecordedProgressWorker, steps=[5, 65], result={"rows": 3})
        self.assertEqual((job.state, job.meta["progress"]), ("completed", 65))
        self.assertEqual(fetch_recorded(job), {"rows": 3})

    def test_only_the_attempt_running_the_job_writes(self):
        job = ProgressWorker.enqueue({}, meta={"keep": "me"})
        set_state(job, "executing", attempt=1, attempted_by=["n", "p1"])
        job = reload(job)
        self.assertEqual(Job.objects.write_progress(job, 30), 1)
        self.assertEqual(reload(job).meta, {"keep": "me", "progress": 30})
        # Another attempt (rescued and fetched again), another producer, or a finished job:
        # a late write of an older attempt changes nothing.
        other = reload(job)
        other.attempt = 2
        self.assertEqual(Job.objects.write_progress(other, 99), 0)
        other = reload(job)
        other.attempted_by = ["n", "p2"]
        self.assertEqual(Job.objects.write_progress(other, 99), 0)
        set_state(job, "completed")
        self.assertEqual(Job.objects.write_progress(job, 99), 0)
        self.assertEqual(reload(job).meta, {"keep": "me", "progress": 30})


class RunningNodeTests(RunjobsMixin, TransactionTestCase):
    def test_progress_is_readable_while_the_job_runs_and_kept_after(self):
        gates = Path(tempfile.mkdtemp(prefix="django_jobs-progress-"))
        node = self.start_runjobs("p", "--queue", "progress=2")
        job = GatedProgressWorker.enqueue({"gate": str(gates / "gate"),
                                           "end": str(gates / "end")})

        def progress():
            row = reload(job)
            return row.state, row.meta.get("progress")

        def report():
            return self.runjobs_report(f"job: {progress()}\n{describe_jobs()}")

        wait_until(lambda: progress() == ("executing", 10), 30, what="the first report",
                   describe=report)
        (gates / "gate").touch()
        # 60 came right after 50, inside the throttle's interval: the node's heartbeat writes
        # it while the job still runs.
        wait_until(lambda: progress() == ("executing", 60), 30, what="the held-back report",
                   describe=report)
        (gates / "end").touch()
        wait_for_state(job, "completed", timeout=30)
        self.assertEqual(progress(), ("completed", 60))
        self.stop_runjobs(node, within=30)


class AdminTests(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))

    def test_list_and_page_show_a_bar_for_numbers(self):
        number = ProgressWorker.enqueue({}, meta={"progress": 42.5})
        text = ProgressWorker.enqueue({}, meta={"progress": "uploading"})
        page = self.client.get(reverse("admin:django_jobs_job_changelist")).content.decode()
        self.assertEqual(page.count('role="progressbar"'), 1)
        self.assertIn('style="width: 42.5%"', page)
        page = self.client.get(reverse("admin:django_jobs_job_change", args=[number.pk]))
        self.assertContains(page, 'aria-valuenow="42.5"')
        self.assertContains(page, "42.5%")
        page = self.client.get(reverse("admin:django_jobs_job_change", args=[text.pk]))
        self.assertNotContains(page, 'role="progressbar"')
        self.assertContains(page, "<code>uploading</code>", html=True)
