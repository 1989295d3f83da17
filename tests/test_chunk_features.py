"""Every member of a chunk is an attempt of its own for job features (encrypted and structured
args, hooks, deadlines), and the interruption seam chunks rely on: :func:`shielded` blocks
and :func:`on_interrupt` wakers (django_jobs/execution/interrupt.py)."""

import datetime
import threading
import time

from django.test import SimpleTestCase, TestCase
from django.utils import timezone

from django_jobs import ChunkWorker, Discard
from django_jobs.execution.interrupt import (JobCancelled, Running, on_interrupt, shielded)
from django_jobs.models import Job, JobState
from django_jobs.pro import structured as s
from django_jobs.pro.encrypted import SEALED, is_sealed
from django_jobs.testing import drain_queue, perform_chunk

from .helpers import describe_jobs
from .waits import in_thread, join_all, wait_event

QUEUE = "chunk-features"
#: What process saw, per worker: lists of (pk, args) of each chunk.
SEEN: dict[str, list] = {}
#: Hook calls: (hook, pk, state).
HOOKS: list[tuple] = []


class SealedTexts(ChunkWorker):
    queue = QUEUE
    size = 4
    gather_timeout = 0.05
    encrypted = True

    def process(self, jobs):
        SEEN.setdefault("sealed", []).append([(job.pk, dict(job.args)) for job in jobs])


class TypedTexts(ChunkWorker):
    queue = QUEUE
    size = 3
    gather_timeout = 0.05

    class Args:
        to = s.Str(required=True)
        at = s.DateTime(required=True)
        count = s.Int(default=1)

    def process(self, jobs):
        SEEN.setdefault("typed", []).append(
            [(job.pk, type(job.args.at).__name__, job.args.count) for job in jobs])


class HookedTexts(ChunkWorker):
    queue = QUEUE
    size = 3
    gather_timeout = 0.05
    deadline = (1, "hour")

    def before_process(self, job):
        HOOKS.append(("before", job.pk, None))
        if job.args.get("skip"):
            return Discard("skipped by its hook")

    def after_process(self, state, job, result):
        HOOKS.append(("after", job.pk, state))

    def process(self, jobs):
        SEEN.setdefault("hooked", []).append(sorted(job.pk for job in jobs))


class ChunkFeatureTests(TestCase):
    def setUp(self):
        SEEN.clear()
        HOOKS.clear()

    def drain(self):
        counts = drain_queue(QUEUE)
        self.assertFalse(Job.objects.filter(state=JobState.EXECUTING).exists(), describe_jobs())
        return counts

    def test_members_args_are_opened_for_process_and_stay_sealed_in_the_table(self):
        jobs = [SealedTexts.enqueue({"to": f"+3361234560{i}", "text": "secret"})
                for i in range(4)]
        self.drain()
        self.assertEqual(len(SEEN["sealed"]), 1, SEEN)   # one chunk: the leader and 3 members
        chunk = SEEN["sealed"][0]
        self.assertEqual(sorted(pk for pk, _ in chunk), sorted(job.pk for job in jobs))
        self.assertTrue(all(args["text"] == "secret" for _, args in chunk), chunk)
        for job in Job.objects.filter(pk__in=[job.pk for job in jobs]):
            self.assertEqual(job.state, JobState.COMPLETED)
            self.assertTrue(is_sealed(job.args), job.args)

    def test_a_member_whose_args_do_not_open_fails_alone(self):
        good = [SealedTexts.enqueue({"to": str(i)}) for i in range(3)]
        bad = SealedTexts.enqueue({"to": "x"})
        sealed = Job.objects.get(pk=bad.pk).args
        data = sealed[SEALED]["data"]   # the ciphertext changed: its tag no longer verifies
        sealed[SEALED]["data"] = data[:20] + ("AAAA" if data[20:24] != "AAAA" else "BBBB") \
            + data[24:]
        Job.objects.filter(pk=bad.pk).update(args=sealed, max_attempts=1)
        self.drain()
        bad = Job.objects.get(pk=bad.pk)
        self.assertEqual(bad.state, JobState.DISCARDED)
        self.assertIn("Decrypt", bad.errors[-1]["error"])
        self.assertNotIn(bad.pk, [pk for chunk in SEEN["sealed"] for pk, _ in chunk])
        self.assertEqual(set(Job.objects.filter(pk__in=[j.pk for j in good])
                             .values_list("state", flat=True)), {JobState.COMPLETED})

    def test_members_args_are_cast(self):
        at = timezone.now().isoformat()
        for i in range(3):
            TypedTexts.enqueue({"to": str(i), "at": at, "count": i + 1})
        self.drain()
        chunk = SEEN["typed"][0]
        self.assertEqual(len(chunk), 3)
        self.assertEqual({kind for _, kind, _ in chunk}, {"datetime"})
        self.assertEqual(sorted(count for _, _, count in chunk), [1, 2, 3])
        self.assertEqual(set(Job.objects.values_list("state", flat=True)), {JobState.COMPLETED})
        # The stored args are the plain JSON they were.
        self.assertEqual({job.args["at"] for job in Job.objects.all()}, {at})

    def test_hooks_run_for_every_job_and_a_hook_verdict_leaves_the_member_out(self):
        jobs = [HookedTexts.enqueue({"n": 0}), HookedTexts.enqueue({"n": 1}),
                HookedTexts.enqueue({"n": 2, "skip": True})]
        self.drain()
        leader, kept, skipped = (job.pk for job in jobs)
        self.assertEqual(SEEN["hooked"], [sorted([leader, kept])])
        self.assertCountEqual([call for call in HOOKS if call[0] == "before"],
                              [("before", pk, None) for pk in (leader, kept, skipped)])
        self.assertCountEqual([call for call in HOOKS if call[0] == "after"],
                              [("after", leader, "complete"), ("after", kept, "complete"),
                               ("after", skipped, "discard")])
        skipped = Job.objects.get(pk=skipped)
        self.assertEqual(skipped.state, JobState.DISCARDED)
        self.assertIn("skipped by its hook", skipped.errors[-1]["error"])

    def test_a_member_past_its_deadline_is_cancelled_and_left_out(self):
        leader = HookedTexts.enqueue({"n": 0})
        late = HookedTexts.enqueue({"n": 1})
        past = (timezone.now() - datetime.timedelta(minutes=1)).isoformat()
        Job.objects.filter(pk=late.pk).update(meta={"deadline_at": past})
        self.drain()
        self.assertEqual(SEEN["hooked"], [[leader.pk]])
        late = Job.objects.get(pk=late.pk)
        self.assertEqual(late.state, JobState.CANCELLED)
        self.assertIn("deadline", late.errors[-1]["error"])
        self.assertEqual(Job.objects.get(pk=leader.pk).state, JobState.COMPLETED)


class ShieldTests(SimpleTestCase):
    """An interrupt that arrives during a shielded block lands when the block ends."""

    def run_attempt(self, body):
        """Run ``body(running, ready)`` as an attempt in a thread; return what it raised."""
        running = Running(job=None)
        ready, caught = threading.Event(), []

        def target():
            running.start()
            try:
                body(running, ready)
            except JobCancelled as exc:
                caught.append(exc)
            finally:
                running.finish()

        thread = in_thread(target, name="attempt")
        return running, ready, caught, thread

    def test_an_interrupt_during_a_shielded_block_waits_for_its_end(self):
        steps = []
        release = threading.Event()

        def body(running, ready):
            with shielded():
                ready.set()
                wait_event(release, what="the test to interrupt")
                for _ in range(1000):  # Python bytecodes: an injected exception would land here
                    pass
                steps.append("block finished")
            steps.append("after the block")

        running, ready, caught, thread = self.run_attempt(body)
        wait_event(ready, what="the shielded block")
        self.assertTrue(running.interrupt(JobCancelled))
        release.set()
        join_all([thread], what="the attempt")
        self.assertEqual(steps, ["block finished"])
        self.assertEqual(len(caught), 1)

    def test_without_a_shield_the_interrupt_lands_at_once(self):
        steps = []

        def body(running, ready):
            ready.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pass
            steps.append("ran to the end")

        running, ready, caught, thread = self.run_attempt(body)
        wait_event(ready, what="the attempt")
        running.interrupt(JobCancelled)
        join_all([thread], what="the attempt")
        self.assertEqual((steps, len(caught)), ([], 1))

    def test_on_interrupt_cuts_a_blocking_wait_short(self):
        woken = threading.Event()

        def body(running, ready):
            with on_interrupt(woken.set):
                ready.set()
                woken.wait(30)   # blocked in C: only the waker ends it before 30 s
            steps.append(time.monotonic())

        steps = []
        running, ready, caught, thread = self.run_attempt(body)
        wait_event(ready, what="the wait")
        started = time.monotonic()
        running.interrupt(JobCancelled)
        join_all([thread], timeout=10, what="the attempt")
        self.assertTrue(woken.is_set())
        self.assertEqual(len(caught), 1)
        self.assertLess(time.monotonic() - started, 10)

    def test_outside_an_attempt_the_helpers_do_nothing(self):
        with shielded(), on_interrupt(lambda: None):
            value = 1
        self.assertEqual(value, 1)


class PerformChunkTests(SimpleTestCase):
    def setUp(self):
        SEEN.clear()
        HOOKS.clear()

    def test_args_are_cast_and_hooks_run(self):
        at = timezone.now().isoformat()
        perform_chunk(TypedTexts, [{"to": "a", "at": at}, {"to": "b", "at": at, "count": 3}])
        self.assertEqual([(kind, count) for _, kind, count in SEEN["typed"][0]],
                         [("datetime", 1), ("datetime", 3)])
        perform_chunk(HookedTexts, [{"n": 1}, {"n": 2, "skip": True}])
        self.assertEqual(len(SEEN["hooked"][0]), 1, "the job its hook discarded is left out")
        # The left-out job's attempt is over: its after hook saw the discard.
        self.assertEqual([(call[0], call[2]) for call in HOOKS],
                         [("before", None), ("before", None), ("after", "discard")])

    def test_sealed_args_are_opened(self):
        perform_chunk(SealedTexts, [{"to": "1", "text": "hi"}])
        self.assertEqual(SEEN["sealed"][0][0][1], {"to": "1", "text": "hi"})
