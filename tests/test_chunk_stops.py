"""A chunk stopped after its job features decided some members (issue 17).

Five ``DecidedTexts`` jobs (tests/chunk_workers.py) make one chunk: the leader, two members for
``process``, a member past its deadline (cancelled before ``process``) and one whose
``before_process`` hook cancels it. The leader is then stopped while ``process`` runs — cancelled,
past its ``timeout()``, or its node shut down — in a node of this process and in real
``runjobs`` children. Whatever stops it: the two decided members keep their verdict, the
members given to ``process`` are put back (cancel, shutdown) or failed with the timeout (each on
its own attempts), no job is left ``executing`` and none is written ``completed`` by the stopped
chunk (it never got to its ``end``).
"""

import datetime
from collections import Counter

from django.test import TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs.models import Job, JobState

from . import chunk_workers as w
from .helpers import reload
from .test_chunks import (SLACK, EffectTable, InProcessNodes, NodeTestCase, ids, insert,
                          states)
from .waits import wait_until

QUEUE = w.QUEUE
AVAILABLE, EXECUTING, COMPLETED = JobState.AVAILABLE, JobState.EXECUTING, JobState.COMPLETED
RETRYABLE, CANCELLED = JobState.RETRYABLE, JobState.CANCELLED


class DecidedChunk:
    """Inserts the chunk (before any node runs: the leader is the first job fetched) and
    checks what every stop must leave."""

    def insert_chunk(self, **leader_args) -> list[Job]:
        """The leader (``stall``: 30 s in its first ``process``, plus ``leader_args``), a
        member, a member past its deadline, a vetoed member, a member."""
        jobs = insert(w.DecidedTexts, {"stall": 30, **leader_args}, {}, {}, {"veto": True}, {})
        past = (timezone.now() - datetime.timedelta(minutes=1)).isoformat()
        Job.objects.filter(pk=jobs[2].pk).update(meta={"deadline_at": past})
        return jobs

    def wait_in_process(self, jobs, timeout: float) -> None:
        leader, kept, _late, _vetoed, other = jobs
        wait_until(lambda: self.chunks() == [ids([leader, kept, other])], timeout,
                   what="the chunk to be in process without its decided members",
                   describe=lambda: f"chunks {self.chunks()}, jobs {states(jobs)}")
        self.assertEqual(states(jobs), [EXECUTING, EXECUTING, CANCELLED, CANCELLED, EXECUTING])

    def assertStopped(self, jobs, wanted) -> None:
        """Final states ``wanted``; the decided members kept their verdicts; nothing executing;
        the stopped chunk never finished."""
        leader, _kept, late, vetoed, _other = map(reload, jobs)
        self.assertEqual(states(jobs), wanted)
        self.assertFalse(Job.objects.filter(state=EXECUTING).exists(), "a job left executing")
        self.assertIn("deadline passed", late.errors[-1]["error"])
        self.assertIn("vetoed by its hook", vetoed.errors[-1]["error"])
        self.assertEqual([e["attempt"] for e in late.errors + vetoed.errors], [1, 1])
        self.assertEqual([row for row in self.effects() if row[2] == "end" and row[1] == leader.pk],
                         [], "the stopped chunk got to its end")

    def assertPutBack(self, *jobs) -> None:
        for job in map(reload, jobs):
            self.assertEqual([e["attempt"] for e in job.errors][:1], [1], job.errors)
            self.assertIn("Put back: the chunk's leader was stopped", job.errors[0]["error"])

    def assertTimedOut(self, leader, *members) -> None:
        leader = reload(leader)
        self.assertEqual((leader.attempt, len(leader.errors)), (1, 1))
        self.assertIn("JobTimeout", leader.errors[0]["error"])
        for job in map(reload, members):
            self.assertEqual((job.state, job.attempt, len(job.errors)), (RETRYABLE, 1, 1))
            self.assertIn(f"JobTimeout: the chunk of job {leader.pk}", job.errors[0]["error"])
            self.assertIn("timeout of 1.5 s", job.errors[0]["error"])


class InProcessStopTests(DecidedChunk, EffectTable, InProcessNodes, TransactionTestCase):
    def test_cancelling_the_leader_puts_back_only_the_undecided_members(self):
        jobs = self.insert_chunk()
        leader, kept, _late, _vetoed, other = jobs
        self.start_node(limit=1)
        self.wait_in_process(jobs, 20)
        django_jobs.pause_queue(QUEUE, local=True)  # the put-back members stay available
        self.assertTrue(django_jobs.cancel_job(leader))
        self.wait_states(jobs, [CANCELLED, AVAILABLE, CANCELLED, CANCELLED, AVAILABLE])
        self.assertStopped(jobs, [CANCELLED, AVAILABLE, CANCELLED, CANCELLED, AVAILABLE])
        self.assertPutBack(kept, other)
        self.assertEqual([reload(job).attempt for job in (kept, other)], [0, 0])

    def test_a_leader_past_its_timeout_fails_with_the_members_it_began(self):
        jobs = self.insert_chunk(limit=1.5)
        leader, kept, _late, _vetoed, other = jobs
        self.start_node(limit=1)
        self.wait_in_process(jobs, 20)
        wanted = [RETRYABLE, RETRYABLE, CANCELLED, CANCELLED, RETRYABLE]
        self.wait_states(jobs, wanted)
        self.assertStopped(jobs, wanted)
        self.assertTimedOut(leader, kept, other)


class NodeStopTests(DecidedChunk, NodeTestCase):
    """The same stops in real ``runjobs`` children."""

    def test_cancelling_the_leader(self):
        jobs = self.insert_chunk()
        leader, kept, _late, _vetoed, other = jobs
        node = self.start_node("cancel", "--no-plugins", limit=1)
        self.wait_in_process(jobs, SLACK)
        self.assertTrue(django_jobs.cancel_job(leader))
        # The members put back run again in a chunk of their own (not stalled: they were
        # stopped once), on their first counted attempt.
        wanted = [CANCELLED, COMPLETED, CANCELLED, CANCELLED, COMPLETED]
        self.wait_for(lambda: states(jobs) == wanted, "the chunk to stop and its members "
                                                      "to run again")
        self.stop_runjobs(node, within=SLACK)
        self.assertStopped(jobs, wanted)
        self.assertPutBack(kept, other)
        self.assertEqual([reload(job).attempt for job in (kept, other)], [1, 1])
        self.assertEqual(self.chunks(), [ids([leader, kept, other]), ids([kept, other])])
        self.assertEqual(self.events("end"), Counter(ids([kept, other])))

    def test_a_leader_past_its_timeout(self):
        jobs = self.insert_chunk(limit=1.5)
        leader, kept, _late, _vetoed, other = jobs
        node = self.start_node("timeout", "--no-plugins", limit=1)
        self.wait_in_process(jobs, SLACK)
        wanted = [RETRYABLE, RETRYABLE, CANCELLED, CANCELLED, RETRYABLE]
        self.wait_for(lambda: states(jobs) == wanted, "the chunk to time out")
        self.stop_runjobs(node, within=SLACK)
        self.assertStopped(jobs, wanted)
        self.assertTimedOut(leader, kept, other)
        self.assertEqual(self.events("end"), Counter())

    def test_the_node_shutting_down(self):
        jobs = self.insert_chunk()
        leader, kept, _late, _vetoed, other = jobs
        node = self.start_node("shutdown", "--no-plugins", "--grace", "0.3", limit=1)
        self.wait_in_process(jobs, SLACK)
        self.stop_runjobs(node, within=SLACK)
        self.assertStopped(jobs, [AVAILABLE, AVAILABLE, CANCELLED, CANCELLED, AVAILABLE])
        self.assertPutBack(kept, other)
        self.assertIn("the node shut down", reload(leader).errors[0]["error"])
        self.assertEqual([reload(job).attempt for job in (leader, kept, other)], [0, 0, 0])
        self.assertEqual(self.events("end"), Counter())
