"""Leader plugins (stager, pruner, lifeline) through a leader node, and the leader lease.

Their decisions, called directly, are tested in tests/test_plugin_decisions.py; their settings
in tests/test_plugin_settings.py."""

import datetime
import uuid

from django.utils import timezone

from django_jobs import signals
from django_jobs.engines import get_engine
from django_jobs.models import Job, Peer
from django_jobs.plugins import connected_plugins
from django_jobs.runtime.node import LEADER_NAME

from . import runtime_workers as w
from .helpers import jobs_settings_with, reload, set_state, wait_for_state
from .runtime_workers import RuntimeTestCase, record, wait_until
from .waits import holds_for, race


def ago(seconds, now=None):
    return (now or timezone.now()) - datetime.timedelta(seconds=seconds)


def make(state, queue="plug", worker=w.ReturnWorker, **changes):
    """A job of ``worker`` put in ``state`` with ``changes``."""
    return set_state(worker.enqueue({"made": state}, queue=queue), state, **changes)


class StagerTests(RuntimeTestCase):
    def test_leader_node_stages_and_runs_scheduled_jobs(self):
        self.start_node({"outcomes": 2}, plugins=True)
        soon = w.ReturnWorker.enqueue({}, schedule_in=0.5)
        later = w.ReturnWorker.enqueue({}, schedule_in=60)
        self.assertEqual(soon.state, "scheduled")
        done = wait_for_state(soon, "completed")
        self.assertGreaterEqual(done.attempted_at, done.scheduled_at)
        self.assertEqual(reload(later).state, "scheduled")

    def test_node_without_plugins_does_not_stage(self):
        self.start_node({"outcomes": 2}, plugins=False)
        job = make("scheduled", queue="outcomes", scheduled_at=ago(1))
        self.assertTrue(holds_for(lambda: reload(job).state == "scheduled", 1.2),
                        "a node without plugins staged a job")


class PrunerTests(RuntimeTestCase):
    def test_leader_node_prunes_one_chunk_per_run(self):
        now = timezone.now()
        for i in range(3):
            make("completed", completed_at=ago(7200 + i, now))
        keep = make("completed", completed_at=ago(60, now))
        ran = []
        receiver = lambda sender, **kw: ran.append(kw) if kw["plugin"] == "pruner" else None  # noqa: E731
        signals.plugin_ran.connect(receiver, weak=False)
        self.addCleanup(signals.plugin_ran.disconnect, receiver)
        self.enterContext(jobs_settings_with(PRUNER={"max_age": 3600, "limit": 2}))
        self.start_node({"plug": 1}, plugins=True)
        wait_until(lambda: ran, what="a pruner run")
        self.assertEqual(ran[0]["result"]["deleted"], 2)
        self.assertEqual(len(ran[0]["result"]["ids"]), 2)
        self.assertEqual(Job.objects.count(), 2)
        self.assertTrue(Job.objects.filter(pk=keep.pk).exists())


class LifelineTests(RuntimeTestCase):
    def test_leader_node_rescues_orphans_and_runs_them(self):
        orphan = make("executing", queue="outcomes", attempt=1,
                      attempted_by=["crashed-node", str(uuid.uuid4())],
                      attempted_at=ago(600))
        self.enterContext(jobs_settings_with(RESCUE_AFTER=3))
        self.start_node({"outcomes": 2}, plugins=True)
        done = wait_for_state(orphan, "completed")
        self.assertEqual(done.attempt, 2)
        self.assertIn("Rescued", done.errors[0]["error"])
        self.assertEqual(done.attempted_by[0],
                         "node-test_leader_node_rescues_orphans_and_runs_them")

    def test_leader_node_never_rescues_its_own_running_jobs(self):
        runs = []
        receiver = lambda sender, **kw: runs.append(kw) if kw["plugin"] == "lifeline" else None  # noqa: E731
        signals.plugin_ran.connect(receiver, weak=False)
        self.addCleanup(signals.plugin_ran.disconnect, receiver)
        job = w.GateWorker.enqueue({})
        self.enterContext(jobs_settings_with(RESCUE_AFTER=3))
        self.start_node({"control": 1}, plugins=True)
        wait_until(lambda: job.pk in record.started, what="the job to start")
        wait_until(lambda: runs, what="a lifeline run")
        self.assertEqual(runs[0]["result"], {"rescued": 0, "discarded": 0,
                                             "producers_removed": 0})
        row = reload(job)
        self.assertEqual(row.state, "executing")
        self.assertEqual(row.errors, [])
        record.gate.set()
        self.assertEqual(wait_for_state(job, "completed").attempt, 1)


class LeadershipTests(RuntimeTestCase):
    def test_only_one_holder_until_expiry(self):
        engine = get_engine()
        now = timezone.now()
        lease = lambda t: t + datetime.timedelta(seconds=10)  # noqa: E731
        self.assertTrue(engine.acquire_leadership("lease", "a", now, lease(now)))
        self.assertFalse(engine.acquire_leadership("lease", "b", now, lease(now)))
        # The holder renews; the other still cannot take it before expiry.
        later = now + datetime.timedelta(seconds=5)
        self.assertTrue(engine.acquire_leadership("lease", "a", later, lease(later)))
        self.assertFalse(engine.acquire_leadership("lease", "b", lease(now), lease(lease(now))))
        peer = Peer.objects.get(name="lease")
        self.assertEqual((peer.node, peer.started_at, peer.expires_at), ("a", now, lease(later)))
        # After expiry the other node takes over, and the old one has lost it.
        expired = lease(later) + datetime.timedelta(seconds=1)
        self.assertTrue(engine.acquire_leadership("lease", "b", expired, lease(expired)))
        self.assertFalse(engine.acquire_leadership("lease", "a", expired, lease(expired)))
        peer = Peer.objects.get(name="lease")
        self.assertEqual((peer.node, peer.started_at), ("b", expired))
        # Leases of other names are independent.
        self.assertTrue(engine.acquire_leadership("other", "a", expired, lease(expired)))

    def test_resign(self):
        engine = get_engine()
        now = timezone.now()
        engine.acquire_leadership("lease", "a", now, now + datetime.timedelta(seconds=60))
        engine.resign_leadership("lease", "b")  # not the holder: nothing happens
        self.assertFalse(engine.acquire_leadership("lease", "b", now, now))
        engine.resign_leadership("lease", "a")
        self.assertTrue(engine.acquire_leadership("lease", "b", now, now))

    def test_concurrent_contenders_get_one_leader(self):
        engine = get_engine()
        now = timezone.now()
        won = race(6, lambda i: engine.acquire_leadership(
            "race", f"n{i}", now, now + datetime.timedelta(seconds=30)), what="contenders")
        winners = [f"n{i}" for i, leads in enumerate(won) if leads]
        self.assertEqual(len(winners), 1, won)
        self.assertEqual(Peer.objects.get(name="race").node, winners[0])

    def test_two_nodes_one_leader_and_handover(self):
        first = self.start_node({"plug": 1}, plugins=True, name="first")
        second = self.start_node({"plug": 1}, plugins=True, name="second")
        self.assertTrue(first.is_leader)
        self.assertFalse(second.is_leader)
        self.assertEqual(Peer.objects.get(name=LEADER_NAME).node, first.lease_holder)
        # Over a leader tick the second node still does not lead.
        self.assertTrue(holds_for(lambda: not second.is_leader, 0.6))
        self.stop_node(first)
        # Handed over because the first resigned (its lease would run for seconds more).
        self.assertFalse(Peer.objects.filter(name=LEADER_NAME, node=first.lease_holder).exists())
        wait_until(lambda: second.is_leader, what="the second node to lead")
        self.assertEqual(Peer.objects.get(name=LEADER_NAME).node, second.lease_holder)

    def test_node_takes_over_an_expired_lease_of_a_dead_node(self):
        now = timezone.now()
        Peer.objects.create(name=LEADER_NAME, node="dead", started_at=ago(60, now),
                            expires_at=now + datetime.timedelta(seconds=30))
        node = self.start_node({"plug": 1}, plugins=True)
        self.assertFalse(node.is_leader)
        Peer.objects.filter(name=LEADER_NAME).update(expires_at=ago(1))  # the lease runs out
        wait_until(lambda: node.is_leader, what="the node to lead")
        self.assertEqual(Peer.objects.get(name=LEADER_NAME).node, node.lease_holder)

    def test_only_the_leader_runs_plugins(self):
        runs = []
        receiver = lambda sender, **kw: runs.append((sender, kw["node"]))  # noqa: E731
        signals.plugin_ran.connect(receiver, weak=False)
        self.addCleanup(signals.plugin_ran.disconnect, receiver)
        leader = self.start_node({"plug": 1}, plugins=True, name="leader")
        follower = self.start_node({"plug": 1}, plugins=True, name="follower")
        wait_until(lambda: len(runs) >= 4, what="4 plugin runs")
        self.assertTrue(all(any(s is p for p in connected_plugins()) for s, _ in runs))
        self.assertEqual({node.name for _, node in runs}, {leader.name})
        self.assertFalse(follower.is_leader)

    def test_stopped_leader_releases_the_lease(self):
        node = self.start_node({"plug": 1}, plugins=True)
        self.assertTrue(Peer.objects.filter(name=LEADER_NAME, node=node.lease_holder).exists())
        self.stop_node(node)
        self.assertFalse(Peer.objects.filter(name=LEADER_NAME).exists())
