"""Leadership: ``acquire_leadership`` and ``resign_leadership``. (The stager's, pruner's and
lifeline's decisions are the plugins' own, tested in the project's tests/test_plugin_decisions.py
over the door, whose primitives the other modules of this suite test.)"""

from __future__ import annotations


from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from ..models import Peer
from .support import (EngineMixin, later)
from .waits import race

class LeadershipTests(EngineMixin, TestCase):
    NAME = "contract-lease"

    def lease(self):
        return Peer.objects.get(name=self.NAME)

    def test_take_renew_contend_expire(self):
        now = timezone.now()
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "a", now, later(10, now)))
        self.assertEqual((self.lease().node, self.lease().started_at, self.lease().expires_at),
                         ("a", now, later(10, now)))
        # Renewed by its holder: started_at stays.
        renewed = later(5, now)
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "a", renewed,
                                                       later(10, renewed)))
        self.assertEqual((self.lease().node, self.lease().started_at, self.lease().expires_at),
                         ("a", now, later(10, renewed)))
        # Contended before it expires: the holder keeps it.
        self.assertFalse(self.engine.acquire_leadership(self.NAME, "b", later(10, renewed),
                                                        later(20, renewed)))
        self.assertEqual((self.lease().node, self.lease().expires_at),
                         ("a", later(10, renewed)))
        # Expired: another node takes it, and the old holder has lost it.
        expired = later(11, renewed)
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "b", expired,
                                                       later(10, expired)))
        self.assertFalse(self.engine.acquire_leadership(self.NAME, "a", expired,
                                                        later(10, expired)))
        self.assertEqual((self.lease().node, self.lease().started_at), ("b", expired))
        # Leases of other names are independent.
        self.assertTrue(self.engine.acquire_leadership("other-lease", "a", expired,
                                                       later(10, expired)))

    def test_resign(self):
        now = timezone.now()
        self.engine.acquire_leadership(self.NAME, "a", now, later(60, now))
        self.engine.resign_leadership(self.NAME, "b")  # not the holder: nothing happens
        self.assertEqual(self.lease().node, "a")
        self.assertFalse(self.engine.acquire_leadership(self.NAME, "b", now, later(60, now)))
        self.engine.resign_leadership(self.NAME, "a")
        self.assertFalse(Peer.objects.filter(name=self.NAME).exists())
        self.assertTrue(self.engine.acquire_leadership(self.NAME, "b", now, later(60, now)))


class LeadershipRaceTests(EngineMixin, TransactionTestCase):
    def test_concurrent_contenders_get_one_leader(self):
        now = timezone.now()
        won = race(4, lambda i: self.engine.acquire_leadership(
            "contract-race", f"node-{i}", now, later(30, now)), what="contenders")
        winners = [f"node-{i}" for i, leads in enumerate(won) if leads]
        self.assertEqual(len(winners), 1, won)
        self.assertEqual(Peer.objects.get(name="contract-race").node, winners[0])
