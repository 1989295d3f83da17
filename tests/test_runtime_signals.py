"""Signals sent by the runtime (django_jobs.signals), with their documented arguments."""

import datetime
import threading

from django.utils import timezone

from django_jobs import Snooze, signals
from django_jobs.models import Peer
from django_jobs.plugins import connected_plugins
from django_jobs.plugins.stager import Stager
from django_jobs.execution.interrupt import JobTimeout
from django_jobs.runtime.node import LEADER_NAME

from . import runtime_workers as w
from .helpers import wait_for_state
from .runtime_workers import RuntimeTestCase, wait_until


class Catcher:
    """Collects ``(sender, kwargs)`` of one signal, from any thread."""

    def __init__(self, test, signal):
        self.calls = []
        self.lock = threading.Lock()
        signal.connect(self.receive, weak=False)
        test.addCleanup(signal.disconnect, self.receive)

    def receive(self, sender, **kwargs):
        with self.lock:
            self.calls.append((sender, kwargs))

    def for_job(self, job):
        with self.lock:
            return [(s, kw) for s, kw in self.calls if kw["job"].pk == job.pk]


class JobSignalTests(RuntimeTestCase):
    def setUp(self):
        super().setUp()
        self.started = Catcher(self, signals.job_started)
        self.stopped = Catcher(self, signals.job_stopped)
        self.exception = Catcher(self, signals.job_exception)

    def test_completed_job(self):
        self.start_node({"outcomes": 2})
        scheduled = timezone.now() - datetime.timedelta(seconds=3)
        job = w.ReturnWorker.enqueue({"value": [1, "two"]}, scheduled_at=scheduled)
        wait_for_state(job, "completed")
        wait_until(lambda: self.stopped.for_job(job), what="job_stopped")
        [(sender, started)] = self.started.for_job(job)
        self.assertIs(sender, w.ReturnWorker)
        self.assertEqual(started["job"].state, "executing")
        self.assertEqual(started["job"].attempt, 1)
        [(sender, stopped)] = self.stopped.for_job(job)
        self.assertIs(sender, w.ReturnWorker)
        self.assertEqual(stopped["state"], "completed")
        self.assertEqual(stopped["result"], [1, "two"])
        # Seconds (not ms): perform returns at once; the job waited the 3 s since it was due
        # plus its fetch (upper bounds generous, for a slow run).
        self.assertIsInstance(stopped["duration"], float)
        self.assertGreaterEqual(stopped["duration"], 0)
        self.assertLess(stopped["duration"], 30)
        self.assertGreaterEqual(stopped["queue_time"], 3)
        self.assertLess(stopped["queue_time"], 3 + 60)
        self.assertEqual(self.exception.for_job(job), [])

    def test_async_result(self):
        self.start_node({"outcomes": 2})
        job = w.AsyncReturnWorker.enqueue({"x": 21})
        wait_until(lambda: self.stopped.for_job(job), what="job_stopped")
        [(sender, stopped)] = self.stopped.for_job(job)
        self.assertIs(sender, w.AsyncReturnWorker)
        self.assertEqual(stopped["result"], {"doubled": 42})
        self.assertEqual(stopped["state"], "completed")

    def test_failed_job(self):
        self.start_node({"outcomes": 2})
        job = w.FailWorker.enqueue({"tag": "sig"})
        wait_until(lambda: self.stopped.for_job(job), what="job_stopped")
        [(sender, exc)] = self.exception.for_job(job)
        self.assertIs(sender, w.FailWorker)
        self.assertIsInstance(exc["exception"], ValueError)
        self.assertEqual(str(exc["exception"]), "boom sig")
        self.assertIn("ValueError: boom sig", exc["traceback"])
        self.assertIn("Traceback", exc["traceback"])
        self.assertEqual(exc["state"], "retryable")
        self.assertGreaterEqual(exc["duration"], 0)
        [(_, stopped)] = self.stopped.for_job(job)
        self.assertEqual(stopped["state"], "retryable")
        self.assertIsNone(stopped["result"])

    def test_last_failure_is_discarded(self):
        self.start_node({"outcomes": 2})
        job = w.FailWorker.enqueue({}, max_attempts=1)
        wait_until(lambda: self.stopped.for_job(job), what="job_stopped")
        self.assertEqual(self.exception.for_job(job)[0][1]["state"], "discarded")
        self.assertEqual(self.stopped.for_job(job)[0][1]["state"], "discarded")

    def test_timeout(self):
        self.start_node({"outcomes": 2})
        job = w.BusyLoopTimeoutWorker.enqueue({})
        wait_until(lambda: self.stopped.for_job(job), what="job_stopped")
        [(sender, exc)] = self.exception.for_job(job)
        self.assertIs(sender, w.BusyLoopTimeoutWorker)
        self.assertIsInstance(exc["exception"], JobTimeout)
        self.assertEqual(exc["state"], "retryable")
        self.assertIn("timeout", exc["traceback"].lower())
        self.assertGreaterEqual(exc["duration"], 0.3)
        self.assertEqual(self.stopped.for_job(job)[0][1]["state"], "retryable")

    def test_snooze_cancel_discard(self):
        self.start_node({"outcomes": 3})
        snooze = w.SnoozeWorker.enqueue({"seconds": 30})
        cancel = w.CancelWorker.enqueue({"reason": "x"})
        discard = w.DiscardWorker.enqueue({"reason": "y"})
        for job in (snooze, cancel, discard):
            wait_until(lambda job=job: self.stopped.for_job(job),
                       what=f"job_stopped of job {job.pk}")
        snoozed = self.stopped.for_job(snooze)[0][1]
        self.assertEqual(snoozed["state"], "scheduled")
        self.assertEqual(snoozed["result"], Snooze(30))
        self.assertEqual(self.stopped.for_job(cancel)[0][1]["state"], "cancelled")
        self.assertEqual(self.stopped.for_job(discard)[0][1]["state"], "discarded")
        for job in (snooze, cancel, discard):
            self.assertEqual(self.exception.for_job(job), [])

    def test_shutdown_put_back(self):
        node = self.start_node({"control": 1}, grace=0.1)
        job = w.GateWorker.enqueue({})
        wait_until(lambda: self.started.for_job(job), what="job_started")
        self.stop_node(node)
        [(_, stopped)] = self.stopped.for_job(job)
        self.assertEqual(stopped["state"], "available")

    def test_failing_receiver_does_not_fail_the_job(self):
        def broken(sender, **kwargs):
            raise RuntimeError("receiver bug")

        signals.job_started.connect(broken, weak=False)
        self.addCleanup(signals.job_started.disconnect, broken)
        signals.job_stopped.connect(broken, weak=False)
        self.addCleanup(signals.job_stopped.disconnect, broken)
        self.start_node({"outcomes": 2})
        job = w.ReturnWorker.enqueue({})
        self.assertEqual(wait_for_state(job, "completed").errors, [])


class NodeSignalTests(RuntimeTestCase):
    def test_plugin_ran(self):
        ran = Catcher(self, signals.plugin_ran)
        node = self.start_node({"plug": 1}, plugins=True)
        wait_until(lambda: {kw["plugin"] for _, kw in ran.calls} >= {"stager", "pruner",
                                                                      "lifeline"},
                   what="a run of each plugin")
        by_name = {}
        for sender, kwargs in list(ran.calls):
            by_name.setdefault(kwargs["plugin"], (sender, kwargs))
        sender, stager = by_name["stager"]
        self.assertIsInstance(sender, Stager)
        self.assertTrue(any(sender is p for p in connected_plugins()))
        self.assertIs(stager["node"], node)
        self.assertEqual(stager["result"], {"queues": []})
        self.assertIsInstance(stager["duration"], float)
        self.assertEqual(by_name["pruner"][1]["result"], {"deleted": 0, "ids": []})
        self.assertEqual(by_name["lifeline"][1]["result"],
                         {"rescued": 0, "discarded": 0, "producers_removed": 0})

    def test_leadership_changed(self):
        changed = Catcher(self, signals.leadership_changed)
        node = self.start_node({"plug": 1}, plugins=True)
        self.assertEqual(len(changed.calls), 1)
        sender, kwargs = changed.calls[0]
        self.assertIs(sender, node)
        self.assertEqual(kwargs["node"], node.name)
        self.assertIs(kwargs["leader"], True)
        # Another node holds the lease now (say the row was taken over after a long pause):
        # at its next renewal this node learns it is no longer leader.
        Peer.objects.filter(name=LEADER_NAME).update(
            node="usurper", expires_at=timezone.now() + datetime.timedelta(seconds=60))
        wait_until(lambda: len(changed.calls) == 2, what="a second leadership_changed")
        sender, kwargs = changed.calls[1]
        self.assertIs(sender, node)
        self.assertIs(kwargs["leader"], False)
        self.assertFalse(node.is_leader)

    def test_follower_sends_nothing(self):
        changed = Catcher(self, signals.leadership_changed)
        Peer.objects.create(name=LEADER_NAME, node="someone", started_at=timezone.now(),
                            expires_at=timezone.now() + datetime.timedelta(seconds=60))
        node = self.start_node({"plug": 1}, plugins=True)
        self.assertFalse(node.is_leader)
        self.assertEqual(changed.calls, [])
