"""Chunk workers (django_jobs/pro/chunk.py): jobs inserted one by one, processed in groups, each
still tracked on its own.

What a chunk promises, checked here on the database the suite runs on:

* options: ``size``, ``timeout`` and ``by`` are checked when the class is defined;
* gathering: a fetched job leads a chunk and claims up to ``size - 1`` available jobs of its
  partition (its worker, its queue, its ``by`` values), never anyone else's; a full chunk runs
  at once, a partial one when its oldest job has waited ``timeout``; inserts wake the leader;
* concurrent leaders never share a member;
* results: every outcome ``process`` can give its jobs, each on the job's own attempts,
  backoff and errors, and the leader's own verdict;
* stopping: a cancelled leader, a cancelled member, a node stopped with SIGTERM or killed with
  SIGKILL (the lifeline rescues leader and members; every job then completes once);
* the testing surfaces: ``perform_chunk``, inline mode, ``perform_job``, ``drain_queue``;
* several chunks of one worker run at once, up to the queue's limit.

Chunks record their moments in the raw table ``chunk_effect`` (tests/chunk_workers.py), one
row per job with its leader's id and a ``time.monotonic()`` instant shared by every process of
the machine: who shared a chunk, how often each job was processed and which chunks overlapped
are read from there, never from a stopwatch.
"""

import datetime
import gc
import logging
import time
import unittest
from collections import Counter

from django.db import connection
from django.db.models import Q
from django.test import SimpleTestCase, TestCase, TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs import ChunkCancel, ChunkDiscard, ChunkError, ChunkWorker
from django_jobs.engines import get_engine
from django_jobs.exceptions import ConfigurationError
from django_jobs.insertion import insert_all
from django_jobs.models import Job, JobState, Producer
from django_jobs.pro.chunk import ChunkFailed, chunk_of, partition_filter, perform_chunk
from django_jobs.runtime import node as node_module
from django_jobs.testing import drain_queue, perform_job, with_testing_mode

from . import chunk_workers as w
from .helpers import describe_jobs, reload, set_state
from .processes import RunjobsMixin
from .waits import in_thread, join_all, race, time_limit, wait_until

QUEUE = w.QUEUE
AVAILABLE, EXECUTING, SCHEDULED = JobState.AVAILABLE, JobState.EXECUTING, JobState.SCHEDULED
COMPLETED, RETRYABLE = JobState.COMPLETED, JobState.RETRYABLE
DISCARDED, CANCELLED = JobState.DISCARDED, JobState.CANCELLED
#: Added to every wait on child processes, for a loaded machine.
SLACK = 60.0


def ids(jobs) -> list[int]:
    return [job.pk for job in jobs]


def states(jobs) -> list[str]:
    """The states of ``jobs`` (in the order given), fresh from the database."""
    found = dict(Job.objects.filter(pk__in=ids(jobs)).values_list("pk", "state"))
    return [found.get(job.pk, "deleted") for job in jobs]


def insert(worker, *args_list, **options) -> list[Job]:
    """One ``insert_all`` of jobs of ``worker``, one per args dict (``n`` added: its index)."""
    return insert_all(worker.new({"n": i, **args}, **options) for i, args in enumerate(args_list))


class EffectTable:
    """Creates the raw ``chunk_effect`` table for the test and reads it back."""

    def setUp(self) -> None:
        super().setUp()
        w.CHUNKS.clear()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {w.EFFECT_TABLE}")  # left by a crashed run
            cursor.execute(w.EFFECT_DDL)
        self.addCleanup(self._drop_effect_table)
        # Keep the runtime's expected warnings (failed, discarded, cancelled jobs) out of the
        # test output.
        handler = logging.NullHandler()
        logging.getLogger("django_jobs").addHandler(handler)
        self.addCleanup(logging.getLogger("django_jobs").removeHandler, handler)

    def _drop_effect_table(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {w.EFFECT_TABLE}")

    def effects(self) -> list[tuple]:
        """Every recorded row: (job_id, leader, event, attempt, pid, at), in time order."""
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT job_id, leader, event, attempt, pid, at FROM "
                           f"{w.EFFECT_TABLE} ORDER BY at, job_id")
            return [tuple(row) for row in cursor.fetchall()]

    def chunks(self) -> list[list[int]]:
        """The job ids of every chunk that got to ``process``, leader first, in start order."""
        found: dict[tuple, list[int]] = {}
        for job_id, leader, event, _attempt, pid, at in self.effects():
            if event == "start":
                found.setdefault((leader, pid, at), []).append(job_id)
        return [[key[0], *sorted(set(members) - {key[0]})]
                for key, members in sorted(found.items(), key=lambda item: item[0][2])]

    def events(self, event: str) -> Counter:
        """How many times each job got to ``event``."""
        return Counter(job_id for job_id, _l, name, *_ in self.effects() if name == event)

    def assertChunks(self, *expected) -> None:
        """The chunks that ran, in start order: each its leader, then its members (any
        order)."""
        self.assertEqual(self.chunks(), [[chunk[0].pk, *sorted(ids(chunk[1:]))]
                                         for chunk in expected],
                         f"chunks by job id; jobs: {describe_jobs()}")

    def spans(self) -> list[tuple[float, float]]:
        """(start, end) of every chunk that got to ``end``."""
        starts = {}
        spans = []
        for _job, leader, event, _attempt, pid, at in self.effects():
            if event == "start":
                starts[leader, pid] = at
            elif event == "end" and (leader, pid) in starts:
                spans.append((starts.pop((leader, pid)), at))
        return sorted(set(spans))

    def most_at_once(self) -> int:
        """The most chunks that were inside ``process`` at one instant."""
        edges = sorted([(start, 1) for start, _ in self.spans()]
                       + [(end, -1) for _, end in self.spans()])
        running = most = 0
        for _at, step in edges:
            running += step
            most = max(most, running)
        return most


class InProcessNodes:
    """Runs real nodes in this process (no plugins: no stager, lifeline or pruner); each is
    stopped, bounded, when the test ends."""

    def start_node(self, limit: int, **options) -> node_module.Node:
        options.setdefault("plugins", False)
        options.setdefault("grace", 2.0)
        options.setdefault("name", f"node-{self._testMethodName}")
        node = node_module.Node(queues={QUEUE: limit}, **options)
        node.start()
        self.addCleanup(self.stop_node, node)
        return node

    @staticmethod
    def stop_node(node) -> None:
        with time_limit(60, f"node {node.name} to stop"):
            node.stop()
        # Pool threads leave their connections to the garbage collector: collect now, or
        # PostgreSQL refuses to drop the test database while they are open.
        gc.collect()

    def wait_states(self, jobs, wanted, timeout: float = 20.0) -> None:
        """Wait until ``jobs`` are in the states ``wanted`` (one state, or one per job)."""
        wanted = [wanted] * len(jobs) if isinstance(wanted, str) else list(wanted)
        wait_until(lambda: states(jobs) == wanted, timeout, what=f"jobs to be {wanted}",
                   describe=lambda: f"they are {states(jobs)}")


# -- options ------------------------------------------------------------------------------------


class OptionTests(SimpleTestCase):
    """``size``, ``timeout`` and ``by`` are checked when the class is defined, and a bad one
    raises ConfigurationError naming the worker."""

    def define(self, **options) -> type:
        return type("BadChunk", (ChunkWorker,), {"__module__": __name__, **options,
                                                 "process": lambda self, jobs: None})

    def test_defaults(self):
        worker = self.define()
        self.assertEqual((worker.size, worker._gather_seconds, worker._chunk_keys),
                         (100, 1.0, []))
        self.assertIsNone(worker().timeout(Job()))  # no run-time limit by default

    def test_size_is_an_integer_from_1_to_10000(self):
        for size in (1, 2, 100, 10_000):
            with self.subTest(size=size):
                self.assertEqual(self.define(size=size).size, size)
        for size in (0, -1, 10_001, True, False, "5", 5.0, None, [5]):
            with self.subTest(size=size), self.assertRaisesRegex(
                    ConfigurationError, r"BadChunk: chunk size must be an integer from 1 to "
                                        r"10,000"):
                self.define(size=size)

    def test_gather_timeout_forms(self):
        for timeout, seconds in ((0, 0.0), (5, 5.0), (0.25, 0.25),
                                 (datetime.timedelta(seconds=90), 90.0),
                                 (datetime.timedelta(milliseconds=1500), 1.5),
                                 ((2, "minutes"), 120.0), ((1, "hour"), 3600.0),
                                 ((3, "seconds"), 3.0)):
            with self.subTest(timeout=timeout):
                self.assertEqual(self.define(gather_timeout=timeout)._gather_seconds, seconds)

    def test_bad_gather_timeouts(self):
        for timeout in (-1, "1s", "5", (1, "fortnight"), (1,), ("1", "second"), True, None,
                        float("inf"), float("nan"), datetime.timedelta(seconds=-1)):
            with self.subTest(timeout=timeout), self.assertRaisesRegex(
                    ConfigurationError, r"BadChunk: .*chunk gather_timeout"):
                self.define(gather_timeout=timeout)

    # `timeout` is the method that bounds a run, as for any worker: a chunk worker that still
    # sets it as the gathering wait is told the new name.
    def test_a_timeout_attribute_names_gather_timeout(self):
        for timeout in (1, 0.5, (2, "minutes"), None):
            with self.subTest(timeout=timeout), self.assertRaisesRegex(
                    ConfigurationError, r"BadChunk: timeout = .*: a chunk worker's timeout is "
                                        r"the method timeout\(self, job\).*gather_timeout = "):
                self.define(timeout=timeout)
        worker = self.define(timeout=lambda self, job: 7)
        self.assertEqual(worker().timeout(Job()), 7)

    def test_by_forms(self):
        leader = w.Texts.new({"account": 7, "region": "eu"}, meta={"tenant": "t1", "shard": 2})
        for by, expected in (
                (None, None),
                ({"args": "account"}, Q(args__account=7)),
                ({"args": ["account", "region"]}, Q(args__account=7) & Q(args__region="eu")),
                ({"args": ("account",)}, Q(args__account=7)),
                ({"meta": "tenant"}, Q(meta__tenant="t1")),
                ({"meta": ["tenant", "shard"]}, Q(meta__tenant="t1") & Q(meta__shard=2)),
                ({"args": "account", "meta": "tenant"},
                 Q(args__account=7) & Q(meta__tenant="t1")),
                ({"args": "missing"}, Q(args__missing__isnull=True) | Q(args__missing=None))):
            with self.subTest(by=by):
                worker = self.define(by=by)
                self.assertEqual(partition_filter(worker(), leader), expected)

    def test_bad_by_forms(self):
        for by in ("account", ["args"], {}, {"kwargs": "account"}, {"worker": True},
                   {"args": "account", "queue": "x"}, {"args": []}, {"args": ""},
                   {"args": [1]}, {"args": ["a", ""]}, {"args": {"account"}}, {"args": None},
                   {"meta": 1}, True, 1):
            with self.subTest(by=by), self.assertRaisesRegex(ConfigurationError,
                                                             r"BadChunk: chunk by"):
                self.define(by=by)

    def test_a_worker_without_process(self):
        worker = type("NoProcess", (ChunkWorker,), {"__module__": __name__})
        with self.assertRaisesRegex(NotImplementedError, "must implement process"):
            worker().process([])


# -- gathering, through drain_queue -------------------------------------------------------------


class GatherTests(EffectTable, TestCase):
    """Which jobs a leader claims, through drain_queue (the fetch and executor of runjobs, one
    job per fetch, in this thread)."""

    def test_a_leader_claims_up_to_size_minus_one_members_in_fetch_order(self):
        jobs = insert(w.Texts, *[{}] * 9)
        # The drain fetches one job at a time: each becomes a leader and gathers the next
        # ones of the queue still available. Its counts are the leaders'.
        self.assertEqual(drain_queue(QUEUE)["completed"], 3)
        self.assertChunks(jobs[0:4], jobs[4:8], jobs[8:9])
        self.assertEqual(set(states(jobs)), {COMPLETED})
        for chunk in (jobs[0:4], jobs[4:8], jobs[8:9]):
            leader, *members = [reload(job) for job in chunk]
            self.assertEqual(leader.attempted_by, ["test", "drain_queue"])
            self.assertIsNone(chunk_of(leader))
            for member in members:
                self.assertEqual(member.attempted_by, ["test", "drain_queue", leader.pk])
                self.assertEqual(chunk_of(member), leader.pk)
                self.assertEqual((member.attempt, member.errors), (1, []))
                self.assertIsNotNone(member.completed_at)
        # Members ended together: one completion time for the chunk.
        self.assertEqual(len({reload(job).completed_at for job in jobs[1:4]}), 1)

    def test_fetch_order_priority_first(self):
        low = insert(w.Texts, {}, {}, priority=5)
        high = insert(w.Texts, {}, {}, {}, priority=0)
        drain_queue(QUEUE, with_limit=1)
        self.assertChunks([*high, low[0]])
        self.assertEqual(states(low), [COMPLETED, AVAILABLE])

    def test_only_its_worker_in_its_queue(self):
        texts = insert(w.Texts, *[{}] * 3)
        other = insert(w.OtherTexts, {}, {})
        plain = insert(w.PlainSMS, {}, {})
        elsewhere = insert(w.Texts, {}, {}, queue="chunks-elsewhere")
        more = insert(w.Texts, {})
        counts = drain_queue(QUEUE)
        # Leaders: a Texts chunk, an OtherTexts chunk, and the two plain jobs.
        self.assertEqual(counts["completed"], 4)
        self.assertChunks([*texts, *more], other)
        self.assertEqual(set(states([*texts, *more, *other, *plain])), {COMPLETED})
        self.assertEqual(states(elsewhere), [AVAILABLE, AVAILABLE])
        self.assertEqual([chunk_of(reload(job)) for job in plain], [None, None])

    def test_only_available_jobs(self):
        leader, *rest = insert(w.Texts, *[{}] * 6)
        scheduled, retryable, executing, cancelled, done = rest
        set_state(scheduled, SCHEDULED, scheduled_at=timezone.now() - datetime.timedelta(1))
        set_state(retryable, RETRYABLE, scheduled_at=timezone.now() - datetime.timedelta(1))
        set_state(executing, EXECUTING, attempt=1, attempted_by=["elsewhere", "producer"])
        set_state(cancelled, CANCELLED, cancelled_at=timezone.now())
        set_state(done, COMPLETED, completed_at=timezone.now())
        drain_queue(QUEUE)
        self.assertChunks([leader])
        self.assertEqual(states(rest), [SCHEDULED, RETRYABLE, EXECUTING, CANCELLED, COMPLETED])
        self.assertEqual(reload(executing).attempted_by, ["elsewhere", "producer"])

    def test_by_an_args_key(self):
        jobs = insert(w.ByAccount, {"account": 1}, {"account": 2}, {"account": 1},
                      {"account": "x"}, {"account": 2, "other": True}, {"account": 1})
        self.assertEqual(drain_queue(QUEUE)["completed"], 3)
        self.assertChunks([jobs[0], jobs[2], jobs[5]], [jobs[1], jobs[4]], [jobs[3]])

    def test_by_an_args_key_keeps_json_types_apart(self):
        jobs = insert(w.ByAccount, {"account": 1}, {"account": "1"}, {"account": 1.5},
                      {"account": True}, {"account": 1}, {"account": "1"})
        drain_queue(QUEUE)
        self.assertChunks([jobs[0], jobs[4]], [jobs[1], jobs[5]], [jobs[2]], [jobs[3]])

    def test_by_a_list_of_args_keys(self):
        jobs = insert(w.ByAccountRegion, {"account": 1, "region": "eu"},
                      {"account": 1, "region": "us"}, {"region": "eu", "account": 1},
                      {"account": 2, "region": "eu"}, {"account": 1})
        drain_queue(QUEUE)
        self.assertChunks([jobs[0], jobs[2]], [jobs[1]], [jobs[3]], [jobs[4]])

    def test_by_a_meta_key(self):
        jobs = [w.ByTenant.new({"n": i}, meta=meta) for i, meta in enumerate(
            [{"tenant": "t1"}, {"tenant": "t2"}, {"tenant": "t1", "other": 1}, {}, {}])]
        insert_all(jobs)
        drain_queue(QUEUE)
        self.assertChunks([jobs[0], jobs[2]], [jobs[1]], [jobs[3], jobs[4]])

    def test_by_args_and_meta(self):
        jobs = [w.ByAccountAndTenant.new({"account": account, "n": i}, meta={"tenant": tenant})
                for i, (account, tenant) in enumerate(
                    [(1, "t1"), (1, "t2"), (2, "t1"), (1, "t1"), (2, "t1")])]
        insert_all(jobs)
        drain_queue(QUEUE)
        self.assertChunks([jobs[0], jobs[3]], [jobs[1]], [jobs[2], jobs[4]])

    def test_jobs_missing_a_by_key_share_a_chunk(self):
        jobs = insert(w.ByAccount, {}, {"account": 1}, {"other": 2}, {})
        drain_queue(QUEUE)
        self.assertChunks([jobs[0], jobs[2], jobs[3]], [jobs[1]])

    # A JSON null and a missing key are one value: no value.
    def test_a_none_value_and_a_missing_key_share_a_chunk(self):
        jobs = insert(w.ByAccount, {"account": None}, {}, {"account": None}, {"account": 1}, {})
        drain_queue(QUEUE)
        self.assertChunks([jobs[0], jobs[1], jobs[2], jobs[4]], [jobs[3]])

    def test_a_full_chunk_does_not_wait_for_the_timeout(self):
        jobs = insert(w.PatientTexts, {}, {}, {})  # size 3, timeout a minute
        with time_limit(30, "a full chunk to run (it must not wait its minute)"):
            self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        self.assertChunks(jobs)
        self.assertEqual(set(states(jobs)), {COMPLETED})

    def test_a_partial_chunk_runs_when_its_oldest_job_has_waited_the_timeout(self):
        started = time.monotonic()
        jobs = insert(w.Texts, {}, {})  # size 4, timeout 0.2 s
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        # Not before the oldest job had waited the timeout (a lower bound only).
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertChunks(jobs)
        self.assertEqual(set(states(jobs)), {COMPLETED})

    def test_a_chunk_of_one_never_waits(self):
        jobs = insert(w.Singles, {}, {}, {})  # size 1, timeout a minute
        with time_limit(30, "chunks of one to run"):
            self.assertEqual(drain_queue(QUEUE)["completed"], 3)
        self.assertChunks([jobs[0]], [jobs[1]], [jobs[2]])


# -- inserts wake a gathering leader ------------------------------------------------------------


class WakeTests(EffectTable, InProcessNodes, TransactionTestCase):
    def test_inserts_during_the_gather_wake_the_leader(self):
        """A leader gathering for a minute (PatientTexts, size 3) is woken by each insert of
        its queue (one job at a time, from this thread) and runs as soon as it is full."""
        self.start_node(limit=1)
        leader = w.PatientTexts.enqueue({"n": 0})
        self.wait_states([leader], EXECUTING)
        second = w.PatientTexts.enqueue({"n": 1})
        wait_until(lambda: chunk_of(reload(second)) == leader.pk, 20,
                   what="the leader to claim the job inserted while it gathered",
                   describe=lambda: f"job is {states([second])}")
        self.assertEqual(states([leader, second]), [EXECUTING, EXECUTING])
        third = w.PatientTexts.enqueue({"n": 2})
        # Full: processed long before the minute's timeout.
        self.wait_states([leader, second, third], COMPLETED, timeout=20)
        self.assertChunks([leader, second, third])

    # A one-row insert wakes waiters of its own process at commit (PostgreSQL sends its NOTIFY
    # from the INSERT's RETURNING; the local wake-up is separate).
    def test_inserts_of_this_process_wake_a_leader_outside_a_node(self):
        leader = w.PatientTexts.enqueue({"n": 0})  # size 3, gathers for a minute
        thread = in_thread(lambda: drain_queue(QUEUE, with_limit=1), name="drain")
        self.addCleanup(join_all, [thread], 90, what="the draining thread")
        # Whatever happens, fill the chunk at the end (insert_all of several jobs wakes the
        # leader on both databases), so that the drain ends.
        self.addCleanup(lambda: insert(w.PatientTexts, {}, {}))
        self.wait_states([leader], EXECUTING)
        more = [w.PatientTexts.enqueue({"n": 1}), w.PatientTexts.enqueue({"n": 2})]
        wait_until(lambda: states([leader, *more]) == [COMPLETED] * 3, 5,
                   what="the leader to be woken by the inserts and run its full chunk",
                   describe=lambda: f"jobs are {states([leader, *more])}")
        self.assertChunks([leader, *more])


# -- concurrent leaders -------------------------------------------------------------------------


class ConcurrentLeaderTests(EffectTable, TransactionTestCase):
    """Leaders in several threads at once, each on its own connection (drain_queue in each:
    the fetch statement of runjobs, SKIP LOCKED on PostgreSQL; SQLite serialises writers):
    no job is in two chunks, every job is processed once."""

    def drain_in_threads(self, count: int) -> list[dict]:
        return race(count, lambda i: drain_queue(QUEUE, with_recursion=True), timeout=60,
                    what="draining threads")

    def assertEachJobProcessedOnce(self, jobs, results) -> None:
        chunks = self.chunks()
        in_chunks = Counter(job_id for chunk in chunks for job_id in chunk)
        self.assertEqual({pk: n for pk, n in in_chunks.items() if n != 1}, {},
                         "jobs in more than one chunk")
        self.assertEqual(set(in_chunks), set(ids(jobs)))
        self.assertEqual(self.events("end"), Counter({pk: 1 for pk in ids(jobs)}))
        self.assertEqual(set(states(jobs)), {COMPLETED})
        # Every chunk was led by one drain: the leaders are the jobs the drains completed.
        self.assertEqual(sum(r["completed"] for r in results), len(chunks))
        for chunk in chunks:
            self.assertEqual({chunk_of(job) for job in Job.objects.filter(pk__in=chunk[1:])},
                             {chunk[0]} if chunk[1:] else set())

    def test_leaders_never_share_a_member(self):
        jobs = insert(w.Texts, *[{}] * 80)
        results = self.drain_in_threads(4)
        self.assertEachJobProcessedOnce(jobs, results)
        self.assertGreater(len([r for r in results if r["completed"]]), 1,
                           "one thread led every chunk: nothing ran concurrently")

    def test_leaders_of_partitions_never_share_a_member(self):
        # By-keys partitions claim through a locked id query, then the fetch of those ids.
        jobs = insert(w.ByAccount, *[{"account": i % 3} for i in range(90)])
        results = self.drain_in_threads(4)
        self.assertEachJobProcessedOnce(jobs, results)
        for chunk in self.chunks():
            accounts = {job.args["account"] for job in Job.objects.filter(pk__in=chunk)}
            self.assertEqual(len(accounts), 1, f"chunk {chunk} mixes accounts {accounts}")


# -- results ------------------------------------------------------------------------------------


class ResultTests(EffectTable, TestCase):
    """What ``process`` returns, written for each job of the chunk (drain_queue: the executor
    and acks of runjobs). The jobs' args script the result (tests/chunk_workers.py)."""

    def run_chunk(self, *jobs, counts=None) -> list[Job]:
        """Insert one chunk's jobs (args dicts of Texts jobs, or jobs built by ``new()``),
        drain it; return the jobs fresh from the database."""
        jobs = insert_all(job if isinstance(job, Job) else w.Texts.new({"n": i, **job})
                          for i, job in enumerate(jobs))
        found = drain_queue(QUEUE)
        if counts is not None:
            self.assertEqual({k: v for k, v in found.items() if v}, counts)
        self.assertEqual(self.chunks()[-1], [jobs[0].pk, *sorted(ids(jobs[1:]))])
        return [reload(job) for job in jobs]

    def assertCompleted(self, *jobs) -> None:
        for job in jobs:
            self.assertEqual((job.state, job.attempt, job.errors), (COMPLETED, 1, []),
                             f"job {job.pk}")
            self.assertIsNotNone(job.completed_at)

    def test_none_or_any_value_completes_every_job(self):
        self.assertCompleted(*self.run_chunk({}, {}, {}))
        self.assertCompleted(*self.run_chunk({"value": {"sent": 3}}, {}, {}))
        self.assertCompleted(*self.run_chunk({"value": "ok"}))
        self.assertCompleted(*self.run_chunk({"value": []}, {}))  # an empty list of results


    def assertErrors(self, job, *texts) -> None:
        """``job.errors`` are one entry per text, of attempts 1, 2..., each containing it."""
        self.assertEqual([e["attempt"] for e in job.errors], list(range(1, len(texts) + 1)),
                         job.errors)
        for entry, text in zip(job.errors, texts, strict=True):
            self.assertIn(text, entry["error"])

    def assertScheduledIn(self, job, seconds: float, since) -> None:
        """``job.scheduled_at`` is ``seconds`` after ``since`` (the drain's start), give or take
        the few seconds the test took."""
        delay = (job.scheduled_at - since).total_seconds()
        self.assertTrue(seconds - 1 <= delay <= seconds + 10, f"scheduled in {delay} s, not "
                                                                f"{seconds}")

    def test_chunk_error_fails_the_jobs_it_names_each_on_its_own_attempts(self):
        before = timezone.now()
        leader, failed, exhausted, slow = self.run_chunk(
            {}, {"error": 1, "backoff": 30}, w.Texts.new({"error": 9}, max_attempts=1),
            {"error": 1, "backoff": 600}, counts={"completed": 1})
        self.assertCompleted(leader)
        for job, backoff in ((failed, 30), (slow, 600)):  # each its own backoff
            self.assertEqual((job.state, job.attempt), (RETRYABLE, 1))
            self.assertErrors(job, "ChunkError: gateway refused")
            self.assertScheduledIn(job, backoff, before)
        self.assertEqual((exhausted.state, exhausted.attempt), (DISCARDED, 1))
        self.assertErrors(exhausted, "ChunkError: gateway refused")
        self.assertIsNotNone(exhausted.discarded_at)
        # Made available now (as the stager does when their time comes), the retries run in a
        # chunk of their own and complete on their second attempt.
        self.assertEqual(django_jobs.retry_all_jobs([failed, slow]), 2)
        drain_queue(QUEUE)
        self.assertEqual(self.chunks()[-1], [failed.pk, slow.pk])
        for job in (failed, slow):
            job = reload(job)
            self.assertEqual((job.state, job.attempt), (COMPLETED, 2))
            self.assertErrors(job, "ChunkError: gateway refused")
        self.assertEqual(states([exhausted]), [DISCARDED])

    def test_chunk_discard_cancel_and_snooze(self):
        before = timezone.now()
        leader, dropped, stopped, snoozed = self.run_chunk(
            {}, {"discard": "bad number"}, {"cancel": "unsubscribed"}, {"snooze": 60})
        self.assertCompleted(leader)
        self.assertEqual((dropped.state, dropped.attempt), (DISCARDED, 1))
        self.assertErrors(dropped, "Discarded: bad number")
        self.assertIsNotNone(dropped.discarded_at)
        self.assertEqual((stopped.state, stopped.attempt), (CANCELLED, 1))
        self.assertErrors(stopped, "Cancelled: unsubscribed")
        self.assertIsNotNone(stopped.cancelled_at)
        # A snooze is not a failure: no error, and max_attempts goes up by one.
        self.assertEqual((snoozed.state, snoozed.attempt, snoozed.max_attempts, snoozed.errors),
                         (SCHEDULED, 1, 4, []))
        self.assertEqual(snoozed.meta.get("snoozed"), 1)
        self.assertScheduledIn(snoozed, 60, before)
        self.assertTrue(django_jobs.retry_job(snoozed))
        drain_queue(QUEUE)
        snoozed = reload(snoozed)
        self.assertEqual((snoozed.state, snoozed.attempt), (COMPLETED, 2))
        self.assertEqual(states([dropped, stopped]), [DISCARDED, CANCELLED])

    def test_a_list_of_results_in_a_bigger_chunk(self):
        jobs = self.run_chunk(*[w.ByAccount.new({"n": i, **args}) for i, args in enumerate(
            [{}, {"error": 1}, {"discard": "gone"}, {}, {"cancel": "stop"}, {"snooze": 30},
             {"error": 1}, {}])])
        self.assertEqual(states(jobs), [COMPLETED, RETRYABLE, DISCARDED, COMPLETED, CANCELLED,
                                        SCHEDULED, RETRYABLE, COMPLETED])
        self.assertEqual({job.attempt for job in jobs}, {1})
        self.assertEqual({chunk_of(job) for job in jobs[1:]}, {jobs[0].pk})

    def test_the_leaders_own_verdict(self):
        before = timezone.now()
        # Named in a ChunkError: the leader fails (ChunkFailed), with its own backoff.
        leader, member = self.run_chunk({"error": 1, "backoff": 45}, {},
                                        counts={"failed": 1})
        self.assertEqual((leader.state, leader.attempt), (RETRYABLE, 1))
        self.assertErrors(leader, "ChunkFailed: gateway refused")
        self.assertIn("Traceback (most recent call last)", leader.errors[0]["error"])
        self.assertScheduledIn(leader, 45, before)
        self.assertCompleted(member)
        # Discarded, cancelled, snoozed.
        leader, member = self.run_chunk({"discard": "bad"}, {}, counts={"discarded": 1})
        self.assertEqual(leader.state, DISCARDED)
        self.assertErrors(leader, "Discarded: bad")
        self.assertCompleted(member)
        leader, member = self.run_chunk({"cancel": "stop"}, {}, counts={"cancelled": 1})
        self.assertEqual(leader.state, CANCELLED)
        self.assertErrors(leader, "Cancelled: stop")
        self.assertCompleted(member)
        leader, member = self.run_chunk({"snooze": 30}, {}, counts={"snoozed": 1})
        self.assertEqual((leader.state, leader.max_attempts, leader.errors), (SCHEDULED, 4, []))
        self.assertCompleted(member)

    def test_an_exception_fails_every_job_on_its_own_attempts(self):
        before = timezone.now()
        leader, member, last = self.run_chunk(
            {"raise": True, "backoff": 20}, {"backoff": 40},
            w.Texts.new({"backoff": 20}, max_attempts=1), counts={"failed": 1})
        self.assertEqual(self.events("raise"), Counter(ids([leader, member, last])))
        self.assertEqual(self.events("end"), Counter())
        for job in (leader, member, last):
            self.assertEqual(job.attempt, 1)
            self.assertErrors(job, "RuntimeError: gateway down")
            self.assertIn("Traceback (most recent call last)", job.errors[0]["error"])
        self.assertEqual((leader.state, member.state, last.state),
                         (RETRYABLE, RETRYABLE, DISCARDED))
        self.assertScheduledIn(leader, 20, before)
        self.assertScheduledIn(member, 40, before)

    # Every way out of process counts, SystemExit included: every job fails, none is left
    # executing.
    def test_a_system_exit_fails_every_job(self):
        jobs = self.run_chunk({"exit": True}, {}, {}, counts={"failed": 1})
        self.assertEqual([job.state for job in jobs], [RETRYABLE] * 3)
        for job in jobs:
            self.assertErrors(job, "SystemExit: 3")

    # docs/chunks.md: naming a job that is not in the chunk fails the leader with ChunkFailed,
    # and the members' outcomes are still written.
    def test_naming_a_job_not_in_the_chunk_fails_the_leader(self):
        leader, *members = self.run_chunk({"foreign": True}, {}, {}, counts={"failed": 1})
        self.assertEqual((leader.state, leader.attempt), (RETRYABLE, 1))
        self.assertErrors(leader, "ChunkFailed: ChunkError names")
        self.assertIn("which is not a job of this chunk", leader.errors[0]["error"])
        self.assertNotIn(EXECUTING, states(members), "the members' outcomes were not written")

    # A verdict that cannot be applied (a bad snooze duration) fails that member: none stays
    # executing.
    def test_a_bad_snooze_duration_leaves_no_member_executing(self):
        leader, bad, other = self.run_chunk({}, {"snooze": "soon"}, {}, counts={"completed": 1})
        self.assertEqual([leader.state, bad.state, other.state],
                         [COMPLETED, RETRYABLE, COMPLETED])
        self.assertErrors(bad, "Snooze must be seconds")


# -- cancelling a leader or a member, on a node of this process ---------------------------------


class CancelTests(EffectTable, InProcessNodes, TransactionTestCase):
    """GatedTexts chunks (size 3) wait in ``process`` until the test opens the gate."""

    def setUp(self) -> None:
        super().setUp()
        w.GATE.clear()
        w.STARTED.clear()

    def start_gated_chunk(self, *args_list) -> list[Job]:
        node = self.start_node(limit=1)
        self.addCleanup(w.GATE.set)  # before the node stops (cleanups run last first)
        jobs = insert(w.GatedTexts, *args_list)
        wait_until(w.STARTED.is_set, 20, what="the chunk to be in process",
                   describe=lambda: f"jobs are {states(jobs)}")
        self.assertEqual(self.chunks(), [ids(jobs)])
        self.node = node
        return jobs

    def test_cancelling_the_leader_puts_the_members_back(self):
        leader, *members = self.start_gated_chunk({}, {}, {})
        # (The queue paused: the members stay available once put back, for the assertions.)
        django_jobs.pause_queue(QUEUE, local=True)
        self.assertTrue(django_jobs.cancel_job(leader))
        # The leader stops in process; its members go back, their attempt not counted.
        self.wait_states(members, AVAILABLE)
        for member in members:
            member = reload(member)
            self.assertEqual(member.attempt, 0)
            self.assertEqual([e["attempt"] for e in member.errors], [1])
            self.assertIn("Put back", member.errors[0]["error"])
        leader = reload(leader)
        self.assertEqual((leader.state, leader.attempt), (CANCELLED, 1))
        self.assertIsNotNone(leader.cancelled_at)
        self.assertEqual(self.events("end"), Counter(), "the chunk finished")
        # They run again, in a chunk of their own, on their first counted attempt.
        w.GATE.set()
        django_jobs.resume_queue(QUEUE, local=True)
        self.wait_states(members, COMPLETED)
        self.assertEqual([reload(m).attempt for m in members], [1, 1])
        self.assertEqual(self.chunks(), [ids([leader, *members]), ids(members)])
        self.assertEqual(self.events("end"), Counter(ids(members)))
        self.assertEqual(chunk_of(reload(members[1])), members[0].pk)
        self.assertEqual(states([leader]), [CANCELLED])

    def test_a_cancelled_member_stays_cancelled_whatever_process_returns(self):
        # process completes the first member and names the second in a ChunkError.
        leader, completes, fails = self.start_gated_chunk({}, {}, {"error": 1})
        self.assertEqual(django_jobs.cancel_all_jobs([completes, fails]), 2)
        self.assertEqual(states([leader, completes, fails]), [EXECUTING, CANCELLED, CANCELLED])
        w.GATE.set()  # the chunk goes on: cancelling a member does not stop it
        self.wait_states([leader], COMPLETED)
        self.assertEqual(states([completes, fails]), [CANCELLED, CANCELLED])
        self.assertEqual(self.events("end"), Counter(ids([leader, completes, fails])))
        self.assertEqual(reload(fails).errors, [])

    def test_cancelling_a_gathering_leader_puts_the_members_back(self):
        self.start_node(limit=1)
        leader, member = insert(w.SlowGather, {}, {})  # size 5: gathers for 5 s
        wait_until(lambda: chunk_of(reload(member)) == leader.pk, 20,
                   what="the leader to claim its member")
        django_jobs.pause_queue(QUEUE, local=True)
        self.assertTrue(django_jobs.cancel_job(leader))
        self.wait_states([leader, member], [CANCELLED, AVAILABLE])
        member = reload(member)
        self.assertEqual(member.attempt, 0)
        self.assertEqual([e["attempt"] for e in member.errors], [1])
        self.assertIn("Put back", member.errors[0]["error"])
        self.assertEqual(self.chunks(), [], "the cancelled leader processed its chunk")


# -- several chunks at once ---------------------------------------------------------------------


class ParallelTests(EffectTable, InProcessNodes, TransactionTestCase):
    def test_chunks_of_one_worker_run_in_parallel_up_to_the_queue_limit(self):
        jobs = insert(w.SlowTexts, *[{"sleep": 0.4}] * 20)  # five chunks of 4
        node = self.start_node(limit=3)
        executing = Job.objects.filter(state=EXECUTING)
        # Members count against their leader's slot only: 3 slots, 12 jobs executing.
        wait_until(lambda: executing.count() == 12, 20, what="three full chunks at once",
                   describe=lambda: describe_jobs())
        self.assertLessEqual(node.running_count(), 3)
        self.wait_states(jobs, COMPLETED, timeout=30)
        # Every job in one chunk. (Their sizes vary: a producer that fetches several leaders at
        # once, when several slots free together, shares the jobs left among them.)
        chunks = self.chunks()
        self.assertEqual(sorted(pk for chunk in chunks for pk in chunk), ids(jobs))
        self.assertLessEqual(max(len(chunk) for chunk in chunks), 4)
        self.assertEqual(self.most_at_once(), 3)


# -- testing surfaces ---------------------------------------------------------------------------


class PerformChunkTests(SimpleTestCase):
    """perform_chunk runs process once with every job, in this thread, without the database
    (a SimpleTestCase refuses any query)."""

    def setUp(self) -> None:
        super().setUp()
        w.CHUNKS.clear()

    def test_returns_what_process_returned(self):
        result = django_jobs.testing.perform_chunk(
            w.SMSWorker, [{"to": "1"}, {"to": "2", "fail": True}, {"to": "3", "drop": True},
                          {"to": "4", "stop": True}, {"to": "5", "fail": True}])
        self.assertEqual(w.CHUNKS, [[None] * 5])  # one chunk of unsaved jobs
        error, discard, cancel = result
        self.assertIsInstance(error, ChunkError)
        self.assertEqual(error.reason, "gateway refused")
        self.assertEqual([job.args["to"] for job in error.jobs], ["2", "5"])
        self.assertIsInstance(discard, ChunkDiscard)
        self.assertEqual([job.args["to"] for job in discard.jobs], ["3"])
        self.assertIsInstance(cancel, ChunkCancel)
        self.assertEqual([job.args["to"] for job in cancel.jobs], ["4"])
        for job in error.jobs:  # as fetched: executing, first attempt, built as new() builds
            self.assertEqual((job.state, job.attempt, job.pk, job.queue),
                             (EXECUTING, 1, None, QUEUE))
        self.assertIs(perform_chunk, django_jobs.testing.perform_chunk)

    def test_args_go_through_the_json_round_trip(self):
        [error, _discard, _cancel] = perform_chunk(w.SMSWorker, [{"to": ("a", "b"), 7: True,
                                                                   "fail": True}])
        self.assertEqual(error.jobs[0].args, {"to": ["a", "b"], "7": True, "fail": True})

    def test_exceptions_propagate(self):
        with self.assertRaisesRegex(RuntimeError, "gateway down"):
            perform_chunk(w.BrokenSMS, [{}, {}])
        self.assertEqual(w.CHUNKS, [[None, None]])


class AloneTests(EffectTable, TestCase):
    """Inline mode and perform_job run a chunk worker's job alone, as a chunk of one."""

    def test_inline_mode_runs_each_job_alone_and_writes_nothing(self):
        with with_testing_mode("inline"):
            done = w.SMSWorker.enqueue({"to": "1"})
            failed = w.SMSWorker.enqueue({"to": "2", "fail": True})
            dropped = w.SMSWorker.enqueue({"to": "3", "drop": True})
            stopped = w.SMSWorker.enqueue({"to": "4", "stop": True})
            broken = w.BrokenSMS.enqueue({})
        self.assertEqual(w.CHUNKS, [[None]] * 5)
        self.assertEqual([job.state for job in (done, failed, dropped, stopped, broken)],
                         [COMPLETED, RETRYABLE, DISCARDED, CANCELLED, RETRYABLE])
        self.assertIn("RuntimeError: gateway down", broken.errors[0]["error"])
        # The leader's own verdict: a ChunkError naming it fails it with ChunkFailed.
        self.assertIn("ChunkFailed: gateway refused", failed.errors[0]["error"])
        self.assertIn("Discarded: bad number", dropped.errors[0]["error"])
        self.assertEqual(Job.objects.count(), 0)

    def test_perform_job_runs_the_job_alone_and_returns_its_result(self):
        self.assertIsNone(perform_job(w.SMSWorker, {"to": "1"}))
        self.assertEqual(perform_job(w.SMSWorker, {"drop": True}), django_jobs.Discard(
            "bad number"))
        self.assertEqual(perform_job(w.SMSWorker, {"stop": True}), django_jobs.Cancel(
            "unsubscribed"))
        with self.assertRaisesRegex(ChunkFailed, "gateway refused"):
            perform_job(w.SMSWorker, {"fail": True})
        with self.assertRaisesRegex(RuntimeError, "gateway down"):
            perform_job(w.BrokenSMS, {})
        self.assertEqual(w.CHUNKS, [[None]] * 5)
        self.assertEqual(Job.objects.count(), 0)

    # perform_job(job) with a row of the table runs it alone, writes nothing, claims nothing.
    def test_perform_job_with_a_job_of_the_table_runs_it_alone(self):
        jobs = insert(w.SMSWorker, {"to": "1"}, {"to": "2"}, {"to": "3"})
        self.assertIsNone(perform_job(reload(jobs[0])))
        self.assertEqual(states(jobs), [AVAILABLE] * 3, "perform_job changed jobs in the table")
        self.assertEqual(w.CHUNKS, [[jobs[0].pk]])


class DrainTests(EffectTable, TestCase):
    """drain_queue fetches one job at a time: each job it fetches leads a chunk gathered from
    the jobs of its partition still available, so jobs enqueued before the drain are processed
    together (docs/testing.md, docs/chunks.md); its counts are those of the leaders."""

    def test_jobs_enqueued_before_the_drain_are_processed_together(self):
        jobs = insert(w.SMSWorker, *[{}] * 7)  # size 5
        self.assertEqual(drain_queue(QUEUE), {"completed": 2, "failed": 0, "discarded": 0,
                                              "cancelled": 0, "snoozed": 0})
        self.assertEqual(w.CHUNKS, [ids(jobs[:5]), ids(jobs[5:])])
        self.assertEqual(set(states(jobs)), {COMPLETED})

    def test_drain_with_limit_counts_leaders_and_runs_their_chunks(self):
        jobs = insert(w.Texts, *[{}] * 6)
        self.assertEqual(drain_queue(QUEUE, with_limit=1),
                         {"completed": 1, "failed": 0, "discarded": 0, "cancelled": 0,
                          "snoozed": 0})
        self.assertEqual(states(jobs), [COMPLETED] * 4 + [AVAILABLE] * 2)

    def test_with_scheduled_runs_the_failed_members_again_in_the_same_drain(self):
        jobs = insert(w.SMSWorker, {}, {"fail": True}, {}, {"fail": True})  # backoff 0.01 s
        self.assertEqual(drain_queue(QUEUE, with_scheduled=True)["completed"], 2)
        self.assertEqual(w.CHUNKS, [ids(jobs), ids([jobs[1], jobs[3]])])
        self.assertEqual([(job.state, job.attempt) for job in map(reload, jobs)],
                         [(COMPLETED, 1), (COMPLETED, 2), (COMPLETED, 1), (COMPLETED, 2)])

    # A leader never waits longer than `timeout` from its start, even for jobs made available
    # before their time by drain_queue(with_scheduled=True).
    def test_drain_with_scheduled_runs_a_retried_chunk_without_waiting_its_backoff(self):
        later = timezone.now() + datetime.timedelta(hours=1)
        jobs = insert(w.Texts, {}, {})
        for job in jobs:
            set_state(job, RETRYABLE, attempt=1, scheduled_at=later)
        # (with_safety=False: the time limit's AssertionError, raised in the leader's wait,
        # must end the drain, not be recorded as the leader's failure.)
        with time_limit(3, "a drain of retried chunk jobs (timeout 0.2 s) to finish"):
            counts = drain_queue(QUEUE, with_scheduled=True, with_safety=False)
        self.assertEqual(counts["completed"], 1)
        self.assertEqual(states(jobs), [COMPLETED, COMPLETED])


# -- real runjobs nodes: shutdown and crash -----------------------------------------------------


class NodeTestCase(EffectTable, RunjobsMixin, TransactionTestCase):
    """Starts ``runjobs`` children on the chunk queue; every child is killed when the test
    ends. Failures report the job counts and the tail of every child's output."""

    def start_node(self, name: str, *args: str, limit: int = 2):
        return self.start_runjobs(name, "--queue", f"{QUEUE}={limit}", *args)

    def report(self, message: str = "") -> str:
        try:
            state = f"jobs: {describe_jobs()}; chunks: {self.chunks()}"
        except Exception as exc:  # the database itself may be the problem
            state = f"(the database is unreadable: {exc!r})"
        return RunjobsMixin.runjobs_report(self, "\n".join(filter(None, [message, state])))

    runjobs_report = report

    def wait_for(self, predicate, what: str, timeout: float = SLACK) -> None:
        wait_until(predicate, timeout, what=what, interval=0.05, describe=self.report)

    def started_by(self, node) -> set[int]:
        """Jobs whose chunk got to process in ``node``'s process."""
        return {job_id for job_id, _l, event, _a, pid, _at in self.effects()
                if event == "start" and pid == node.pid}

    def executing_on(self, node) -> list[Job]:
        return [job for job in Job.objects.filter(state=EXECUTING).order_by("pk")
                if job.attempted_by and job.attempted_by[0] == node.name]


class NodeWakeTests(NodeTestCase):
    @unittest.skipUnless(get_engine().has_listen_notify,
                         "inserts reach a leader of another process by LISTEN/NOTIFY; without "
                         "it (SQLite) they wake only their own process, and the leader of a "
                         "node claims them when its timeout ends (docs/chunks.md)")
    def test_inserts_of_another_process_wake_a_gathering_leader(self):
        self.start_node("patient", "--no-plugins", limit=1)
        leader = w.PatientTexts.enqueue({"n": 0})  # size 3, gathers for a minute
        self.wait_for(lambda: states([leader]) == [EXECUTING], "the leader to start")
        second = w.PatientTexts.enqueue({"n": 1})
        self.wait_for(lambda: chunk_of(reload(second)) == leader.pk,
                      "the leader to claim the job inserted while it gathered", timeout=20)
        third = w.PatientTexts.enqueue({"n": 2})
        self.wait_for(lambda: states([leader, second, third]) == [COMPLETED] * 3,
                      "the full chunk to run (long before its minute)", timeout=20)
        self.assertChunks([leader, second, third])


class ShutdownTests(NodeTestCase):
    """SIGTERM with a short grace period: a chunk still in process, or still gathering, is
    stopped, and the leader and its members go back to available, their attempt not counted."""

    def assertPutBack(self, jobs) -> None:
        self.assertEqual(states(jobs), [AVAILABLE] * len(jobs), self.report())
        for job in map(reload, jobs):
            self.assertEqual(job.attempt, 0, f"job {job.pk}")
            self.assertEqual([e["attempt"] for e in job.errors], [1], f"job {job.pk}")
        leader, *members = map(reload, jobs)
        self.assertIn("the node shut down", leader.errors[0]["error"])
        for member in members:
            self.assertIn("Put back: the chunk's leader was stopped", member.errors[0]["error"])

    def test_sigterm_during_process_puts_the_chunk_back(self):
        node = self.start_node("graceful", "--no-plugins", "--grace", "0.3", limit=1)
        jobs = insert(w.SlowTexts, *[{"stall": 60}] * 4)
        self.wait_for(lambda: self.started_by(node) == set(ids(jobs)), "the chunk to start")
        self.stop_runjobs(node, within=SLACK)
        self.assertPutBack(jobs)
        self.assertEqual(self.events("end"), Counter())
        # Back for another chunk (the stall was for the first run only).
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        self.assertEqual(states(jobs), [COMPLETED] * 4)
        self.assertEqual(self.events("end"), Counter(ids(jobs)))

    def test_sigterm_during_the_gather_puts_the_chunk_back(self):
        node = self.start_node("graceful", "--no-plugins", "--grace", "0.3", limit=1)
        leader, member = insert(w.SlowGather, {}, {})  # size 5: gathers for 5 s
        self.wait_for(lambda: chunk_of(reload(member)) == leader.pk,
                      "the leader to claim its member")
        self.stop_runjobs(node, within=SLACK)
        self.assertPutBack([leader, member])
        self.assertEqual(self.chunks(), [], "the chunk got to process")


class CrashTests(NodeTestCase):
    def test_a_node_killed_mid_chunk_loses_nothing_and_runs_nothing_twice(self):
        """A node SIGKILLed with two chunks in process; another node starts, its lifeline
        rescues leaders and members, and every job's work ends exactly once."""
        victim = self.start_node("victim", "--no-plugins", limit=2)
        before = insert(w.SlowTexts, *[{}] * 4)  # one chunk, finished before the kill
        self.wait_for(lambda: states(before) == [COMPLETED] * 4, "the first chunk to complete")
        stalled = insert(w.SlowTexts, *[{"stall": 60}] * 8)  # two chunks, in process
        self.wait_for(lambda: self.started_by(victim) >= set(ids(stalled)),
                      "two chunks to be in process")
        victim.kill()
        orphans = self.executing_on(victim)
        self.assertEqual(ids(orphans), ids(stalled), self.report("not all left executing"))
        leaders = [job for job in orphans if chunk_of(job) is None]
        self.assertEqual(len(leaders), 2)
        self.assertEqual(Counter(chunk_of(job) for job in orphans if chunk_of(job)),
                         {leader.pk: 3 for leader in leaders})
        by_id = {job.pk: job for job in orphans}
        for job in orphans:  # members: attempted by their leader's node and producer
            leader = by_id[chunk_of(job) or job.pk]
            self.assertEqual(job.attempted_by[:2], leader.attempted_by[:2])
        after = insert(w.SlowTexts, *[{}] * 4)  # inserted while no node runs
        # Start the next node once the victim's heartbeat is stale, so that the lifeline's first
        # run (on the new leader's first tick) rescues at once.
        rows = Producer.objects.filter(node="victim")
        self.wait_for(lambda: not rows.filter(
            heartbeat_at__gt=timezone.now() - datetime.timedelta(seconds=3.5)).exists(),
            "the killed node's heartbeat to be 3.5 s old")
        rescuer = self.start_node("rescuer", "--rescue-after", "3", limit=2)
        everything = [*before, *stalled, *after]
        self.wait_for(lambda: states(everything) == [COMPLETED] * 16, "every job to complete")
        self.stop_runjobs(rescuer, within=SLACK)

        self.assertEqual(Job.objects.count(), 16)
        for job in map(reload, stalled):
            self.assertEqual([e["error"][:8] for e in job.errors], ["Rescued:"], job.errors)
            self.assertEqual(job.attempted_by[0], "rescuer")
            self.assertEqual(job.attempt, 2)
        # Every job's work ended exactly once: the killed chunks never got to their end, and
        # the rescued jobs ran again in new chunks of the new node.
        self.assertEqual(self.events("end"), Counter(ids(everything)))
        started = Counter(job_id for job_id, _l, event, _a, pid, _at in self.effects()
                          if event == "start" and pid != victim.pid)
        self.assertEqual(started, Counter(ids([*stalled, *after])))
