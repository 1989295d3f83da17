"""Rows written behind django_jobs's back: ``execute()`` never raises for what a row holds.

Each case writes a row straight into the table (a queryset ``update``: meta that is a list,
errors that are an object, args that are a list...) next to plain jobs, and runs them through
``drain_queue`` and through a real ``runjobs`` child: every bad row's attempt fails, counted,
with an error naming the cause (retried, then discarded: never put back for ever), and the
plain jobs complete.
"""

from django.test import TestCase, TransactionTestCase

from django_jobs.models import Job, JobState
from django_jobs.testing import drain_queue

from . import row_workers as w
from .helpers import describe_jobs, reload
from .processes import RunjobsMixin
from .waits import wait_until

DISCARDED, COMPLETED = JobState.DISCARDED, JobState.COMPLETED

#: (worker, args, the columns written straight into the row, text the error must contain).
CASES = {
    "a snooze with meta a list": (
        w.Snoozer, {}, {"meta": [1, 2]},
        "cannot snooze: the job's meta is not a JSON object (it is a list)"),
    "a recorded result with meta a string": (
        w.Recorder, {}, {"meta": "oops"},
        "cannot write meta keys recorded, return: the job's meta is not a JSON object (it is "
        "a string)"),
    "a failure with errors an object": (
        w.Failer, {}, {"errors": {"a": 1}},
        "RuntimeError: gateway down"),
    "structured args a list": (
        w.Typed, {"to": "x"}, {"args": [1, 2]}, "is not an object"),
    "a chunk by args whose leader's args are a list": (
        w.ByAccount, {"account": 1}, {"args": ["account"]},
        "chunk by args: the leader's args is not a JSON object"),
}


def insert_rows() -> tuple[dict[str, Job], list[Job]]:
    """One job per case, its row then broken, with max_attempts 1 (discarded at once); and
    two plain jobs."""
    bad = {}
    for label, (worker, args, columns, _text) in CASES.items():
        job = worker.enqueue(args, max_attempts=1)
        Job.objects.filter(pk=job.pk).update(**columns)
        bad[label] = job
    return bad, [w.Plain.enqueue({}), w.Plain.enqueue({})]


class BadRowChecks:
    def assertFailedNamingTheCause(self, bad: dict[str, Job], plain: list[Job]) -> None:
        for label, job in bad.items():
            with self.subTest(label):
                job = reload(job)
                self.assertEqual((job.state, job.attempt), (DISCARDED, 1), job.errors)
                self.assertIn(CASES[label][3], job.errors[-1]["error"])
        self.assertEqual({reload(job).state for job in plain}, {COMPLETED})
        # A row's errors that were not a list are kept, as the text of the first entry.
        failer = reload(bad["a failure with errors an object"])
        self.assertEqual(len(failer.errors), 2)
        self.assertIn("were not a JSON list; they held: {'a': 1}", failer.errors[0]["error"])


class DrainTests(BadRowChecks, TestCase):
    def test_every_bad_row_fails_naming_its_cause(self):
        bad, plain = insert_rows()
        counts = drain_queue(w.QUEUE)
        self.assertEqual((counts["discarded"], counts["completed"]), (len(CASES), 2))
        self.assertFailedNamingTheCause(bad, plain)


class NodeTests(BadRowChecks, RunjobsMixin, TransactionTestCase):
    def test_a_node_fails_every_bad_row_once_and_runs_the_others(self):
        bad, plain = insert_rows()
        node = self.start_runjobs("rows", "--queue", f"{w.QUEUE}=2", "--no-plugins")
        jobs = [*bad.values(), *plain]
        wait_until(lambda: {reload(job).state for job in jobs} <= {DISCARDED, COMPLETED}, 60,
                   what="every job to be discarded or completed",
                   describe=lambda: self.runjobs_report(describe_jobs()))
        self.stop_runjobs(node, within=60)
        self.assertFailedNamingTheCause(bad, plain)
