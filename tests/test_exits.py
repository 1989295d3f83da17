"""Every way out of ``perform`` counts: ``SystemExit``, ``KeyboardInterrupt`` and
``GeneratorExit`` raised by a job are failed attempts (counted, recorded, retried with backoff,
discarded at ``max_attempts``), and the node keeps running. Only the node's own shutdown puts a
job back uncounted."""

from __future__ import annotations

from django.test import TestCase, TransactionTestCase

from django_jobs.models import Job, JobState
from django_jobs.testing import JobsTestMixin

from .exit_workers import EXITS, ExitWorker
from .processes import RunjobsMixin
from .waits import wait_until

TIMEOUT = 60.0


class DrainTests(JobsTestMixin, TestCase):
    def test_each_exit_is_a_counted_failed_attempt(self):
        ids = {name: ExitWorker.enqueue({"exit": name}).pk for name in EXITS}
        counts = self.drain_queue("exits")
        self.assertEqual(counts["failed"], len(EXITS))
        for name, pk in ids.items():
            job = Job.objects.get(pk=pk)
            self.assertEqual((job.state, job.attempt), (JobState.RETRYABLE, 1), name)
            self.assertIn(name, job.errors[-1]["error"])


class NodeTests(RunjobsMixin, TransactionTestCase):
    def test_exits_are_counted_retried_discarded_and_the_node_lives_on(self):
        self.start_runjobs("exits", "--queue", "exits=3")
        forever = {name: ExitWorker.enqueue({"exit": name}).pk for name in EXITS}
        once = {name: ExitWorker.enqueue({"exit": name, "until": 2}).pk for name in EXITS}

        def settled() -> bool:
            states = dict(Job.objects.values_list("pk", "state"))
            return (all(states[pk] == JobState.DISCARDED for pk in forever.values())
                    and all(states[pk] == JobState.COMPLETED for pk in once.values()))

        wait_until(settled, TIMEOUT, what="exiting jobs discarded, the once-exiting completed",
                   describe=lambda: self.runjobs_report(str(list(Job.objects.values_list(
                       "pk", "state", "attempt")))))
        for name, pk in forever.items():
            job = Job.objects.get(pk=pk)
            self.assertEqual(job.attempt, 3, name)
            self.assertEqual([e["attempt"] for e in job.errors], [1, 2, 3], name)
            self.assertIn(name, job.errors[0]["error"])
        for name, pk in once.items():
            job = Job.objects.get(pk=pk)
            self.assertEqual((job.attempt, len(job.errors)), (2, 1), name)
        later = ExitWorker.enqueue({"exit": "SystemExit", "until": 1})
        wait_until(lambda: Job.objects.get(pk=later.pk).state == JobState.COMPLETED, TIMEOUT,
                   what="a job after them completed", describe=lambda: self.runjobs_report(""))
