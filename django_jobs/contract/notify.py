"""Waking producers and announcing control messages: ``notify`` at commit only (over
LISTEN/NOTIFY where the engine has it, this process's producers otherwise), inserts waking the
queues of their available jobs, ``announce``."""

from __future__ import annotations

import json

from django.db import transaction
from django.test import TransactionTestCase

from .support import (EngineMixin, build, count_statements, skip_if_listen_notify,
                      skip_unless_listen_notify)
from .watching import CONTROL_CHANNEL, INSERT_CHANNEL, Listener, Producers, Refused

class NotifyTests(EngineMixin, TransactionTestCase):
    def test_notify_wakes_producers_at_commit_only(self):
        producers = Producers(self, self.engine, ["a", "b", "c"])
        with transaction.atomic():
            self.engine.notify(["b", "a", "b"])
            self.assertEqual(producers.heard(), [], "woken before the commit")
        self.assertEqual(producers.heard(), ["a", "b"])
        with self.assertRaises(Refused), transaction.atomic():
            self.engine.notify(["c"])
            raise Refused("roll back")
        self.assertEqual(producers.heard(), [], "woken for a rolled-back transaction")
        self.engine.notify([])
        self.assertEqual(producers.heard(), [])

    def test_notify_is_heard_by_another_connection_at_commit(self):
        skip_unless_listen_notify(self)
        listener = Listener(INSERT_CHANNEL)
        self.addCleanup(listener.close)
        with transaction.atomic():
            self.engine.notify(["b", "a"])
            self.assertEqual(listener.heard(), [])
        self.assertEqual(sorted(listener.heard()), ["a", "b"])

    def test_inserts_wake_the_queues_of_available_jobs(self):
        producers = Producers(self, self.engine, ["a", "b", "c", "d", "e"])
        [holder] = build(queue="d", unique={"period": "infinity"})
        self.engine.insert_jobs([holder])
        self.assertEqual(producers.heard(), ["d"])
        # Many jobs: the queues with available jobs, not the one with only scheduled jobs.
        jobs = [*build(2, queue="a"), *build(queue="b", schedule_in=60), *build(queue="c")]
        with transaction.atomic():
            self.engine.insert_jobs(jobs)
            self.assertEqual(producers.heard(), [])
        self.assertEqual(producers.heard(), ["a", "c"])
        # One job, available or scheduled.
        self.engine.insert_jobs(build(queue="e"))
        self.engine.insert_jobs(build(queue="b", schedule_in=60))
        self.assertEqual(producers.heard(), ["e"])
        # Skipped conflicts wake nobody.
        with transaction.atomic():
            self.engine.insert_jobs([*build(queue="d", unique={"period": "infinity"}),
                                     *build(queue="e", unique={"period": "infinity"},
                                            start=9)], skip_conflicts=True)
        self.assertEqual(producers.heard(), ["e"])
        # A rolled-back insert wakes nobody.
        with self.assertRaises(Refused), transaction.atomic():
            self.engine.insert_jobs(build(2, queue="a"))
            raise Refused("roll back")
        self.assertEqual(producers.heard(), [])

    def test_announce_reaches_another_connection_at_commit(self):
        skip_unless_listen_notify(self)
        listener = Listener(CONTROL_CHANNEL)
        self.addCleanup(listener.close)
        message = {"action": "pause", "queue": "a", "node": None}
        self.engine.announce(message)
        self.assertEqual([json.loads(p) for p in listener.heard()], [message])
        with transaction.atomic():
            self.engine.announce({"action": "resume", "queue": "a"})
            self.assertEqual(listener.heard(), [])
        self.assertEqual([json.loads(p) for p in listener.heard()],
                         [{"action": "resume", "queue": "a"}])

    def test_announce_without_listen_notify_sends_nothing(self):
        skip_if_listen_notify(self)
        with count_statements() as statements:
            self.assertIsNone(self.engine.announce({"action": "pause", "queue": "a"}))
        self.assertEqual(statements, [])
