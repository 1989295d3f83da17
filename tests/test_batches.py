"""Batches (django_jobs/pro/batch.py, docs/batches.md): many jobs as one group, each handler
fired exactly once.

What is checked here, on the database the suite runs on (PostgreSQL-only tests say so):

* the API: ``new_batch`` from args (job options forwarded) and from jobs built beforehand
  (heterogeneous batches name their callback worker; a callback worker without handlers is
  refused), batch ids (UUIDv7 by default, ``gen_id()``, explicit), joining later with
  ``new(..., batch_id=...)``, the callback jobs (their queue, args and meta; never members),
  ``all_batch_jobs`` / ``stream_batch_jobs`` (in constant memory) and ``batch_status``;
* each handler's meaning: attempted (a put-back does not count, a rescue does), completed,
  exhausted, and the first cancelled / discarded / retryable member; errors, snoozes, cancels,
  a discarded member retried by hand, failing callbacks, late members, deletes and the pruner;
* exactly once under concurrency: two connections acking the last two members at once
  (threads, both databases), the last members of 200 batches finishing together on three
  ``runjobs`` nodes, nodes SIGKILLed right after (and right before) the commit of the ack
  that completes a batch (PostgreSQL);
* the ledger never drifts (``recount`` after random runs finds nothing off); the sweep
  repairs a ledger broken on purpose and fires what is due, once;
* tracking costs a constant number of statements per ack, never a count over the batch.

Every "exactly once" is read from the database: the callback jobs of a batch (``batch_id``
and ``batch_callback`` in their meta), the ledger's ``fired`` bits and ``callbacks`` map.
"""

import datetime
import itertools
import logging
import os
import random
import time
import tracemalloc
import unittest
import uuid
from collections import Counter

from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_jobs
from django_jobs import control
from django_jobs.engines import get_engine
from django_jobs.exceptions import InvalidJobError
from django_jobs.execution.executor import put_back
from django_jobs.outcome import Outcome
from django_jobs.insertion import insert_all
from django_jobs.models import Batch, Job, JobState, Peer
from django_jobs.models.batch import COUNTERS, HANDLER_BITS, HANDLERS
from django_jobs.plugins.lifeline import rescue_orphans
from django_jobs.plugins.pruner import Retention, prune_jobs
from django_jobs.plugins.stager import stage_jobs
from django_jobs.pro.batch import (BatchSweep, all_batch_jobs, batch_status, recount,
                                   stream_batch_jobs, uuid7)
from django_jobs.pro.recorded import fetch_recorded
from django_jobs.runtime import node as node_module
from django_jobs.testing import drain_queue, with_testing_mode
from django_jobs.transitions import ack

from . import batch_workers as w
from .helpers import count_statements, describe_jobs
from .processes import RunjobsMixin
from .waits import race, wait_until

QUEUE = w.QUEUE
CB = w.CALLBACK_QUEUE
AVAILABLE, SCHEDULED, EXECUTING = JobState.AVAILABLE, JobState.SCHEDULED, JobState.EXECUTING
COMPLETED, DISCARDED, CANCELLED = JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED
RETRYABLE = JobState.RETRYABLE
#: The "every member" handlers, which fire together when the last member completes.
EVERY = ("handle_attempted", "handle_completed", "handle_exhausted")
POSTGRES = connection.vendor == "postgresql"
#: Added to every wait on child processes, for a loaded machine.
SLACK = 60.0


# -- reading batches back -----------------------------------------------------------------------


def batch_of(job) -> str:
    return job.meta["batch_id"]


def callback_jobs(batch_id: str | None = None) -> list[Job]:
    """The callback jobs (of one batch, or of all), in id order."""
    jobs = Job.objects.filter(batch__isnull=True, meta__has_key="batch_callback").order_by("id")
    return [job for job in jobs if batch_id is None or job.meta.get("batch_id") == batch_id]


def fired(batch_id: str) -> Counter:
    """How many callback jobs each handler of the batch has."""
    return Counter(job.meta["batch_callback"] for job in callback_jobs(batch_id))


def ledger(batch_id: str) -> Batch:
    return Batch.objects.get(pk=batch_id)


def counters(batch: Batch) -> dict[str, int]:
    return {name: getattr(batch, name) for name in COUNTERS}


def states(jobs) -> list[str]:
    found = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "state"))
    return [found.get(j.pk, "deleted") for j in jobs]


def fetch(queue: str = QUEUE, limit: int = 100, by=("test-node", "test-producer"),
          ids=None) -> list[Job]:
    """Claim available jobs as a node would (executing, attempt + 1)."""
    return get_engine().fetch_jobs(queue, limit, list(by), timezone.now(), ids=ids)


def complete(*jobs) -> None:
    """Ack ``jobs`` (as fetched) as completed, in one Engine.ack."""
    ack([Outcome(job.pk, COMPLETED, timezone.now(), job=job) for job in jobs])


def sweep(at=None) -> dict:
    """One run of the batch sweep at ``at`` (default: 11 s from now, past its quiet time)."""
    at = at or timezone.now() + datetime.timedelta(seconds=11)
    return BatchSweep().run(None, get_engine(), at)


class BatchAssertions:
    def setUp(self) -> None:
        super().setUp()
        # Keep the runtime's expected warnings (failed, discarded, cancelled jobs) quiet.
        handler = logging.NullHandler()
        logging.getLogger("django_jobs").addHandler(handler)
        self.addCleanup(logging.getLogger("django_jobs").removeHandler, handler)

    def new_batch(self, args_list, worker=w.EveryHandler, **options) -> tuple[list[Job], str]:
        """Insert a batch built from args (callbacks in CB unless told); return its members
        and id."""
        options.setdefault("batch_callback_queue", CB)
        jobs = insert_all(worker.new_batch(list(args_list), **options))
        return jobs, batch_of(jobs[0])

    def new_batch_of(self, jobs, **options) -> tuple[list[Job], str]:
        """Insert a batch of jobs built beforehand (callbacks in CB unless told; the
        callback worker: EveryHandler unless told)."""
        options.setdefault("batch_callback_queue", CB)
        options.setdefault("batch_callback_worker", w.EveryHandler)
        inserted = insert_all(django_jobs.new_batch(list(jobs), **options))
        return inserted, batch_of(inserted[0])

    def assertFired(self, batch_id: str, *handlers: str) -> None:
        """The batch has exactly one callback job for each of ``handlers`` and none for any
        other handler; its ledger's bits and callbacks map say the same."""
        self.assertEqual(fired(batch_id), Counter(handlers),
                         f"callback jobs of batch {batch_id}")
        batch = ledger(batch_id)
        for handler in handlers:
            self.assertTrue(batch.has_fired(handler), f"{handler} bit of batch {batch_id}")
        self.assertEqual(batch.callbacks,
                         {job.meta["batch_callback"]: job.pk for job in callback_jobs(batch_id)})

    def assertLedgerExact(self, batch_id: str) -> Batch:
        """recount() finds the ledger right (every counter equal to a count of the members)."""
        batch = ledger(batch_id)
        before = counters(batch)
        off = recount(batch, get_engine().alias)
        self.assertEqual(before, counters(batch), f"ledger of batch {batch_id} (kept, counted)")
        self.assertFalse(off)
        return batch

    def run_members(self, **options) -> dict:
        """Drain the members' queue (scheduled, retryable and snoozed ones too)."""
        options.setdefault("with_scheduled", True)
        return drain_queue(QUEUE, **options)

    def run_callbacks(self, **options) -> dict:
        return drain_queue(CB, **options)


# -- the API ------------------------------------------------------------------------------------


class NewBatchTests(BatchAssertions, TestCase):
    def test_from_args_with_every_job_option_forwarded(self):
        before = timezone.now()
        jobs = w.EveryHandler.new_batch(
            [{"n": i} for i in range(3)], schedule_in=3600, priority=3, max_attempts=7,
            tags=["mailing"], queue="other-queue", meta={"campaign": "spring"},
            batch_callback_queue=CB)
        self.assertEqual(len(jobs), 3)
        batch_id = batch_of(jobs[0])
        for i, job in enumerate(jobs):
            self.assertIsNone(job.pk, "new_batch returns unsaved jobs")
            self.assertEqual(job.worker, w.EveryHandler.worker_path)
            self.assertEqual(job.args, {"n": i})
            self.assertEqual(job.meta, {"campaign": "spring", "batch_id": batch_id})
        inserted = insert_all(jobs)
        for job in Job.objects.filter(pk__in=[j.pk for j in inserted]):
            self.assertEqual((job.state, job.priority, job.max_attempts, job.tags, job.queue),
                             (SCHEDULED, 3, 7, ["mailing"], "other-queue"))
            self.assertAlmostEqual((job.scheduled_at - before).total_seconds(), 3600, delta=60)
            self.assertEqual(job.meta, {"campaign": "spring", "batch_id": batch_id})
            self.assertEqual(job.batch, batch_id)
        batch = ledger(batch_id)
        self.assertEqual(counters(batch), {"members": 3, "attempted": 0, "completed": 0,
                                           "cancelled": 0, "discarded": 0, "retryable": 0})
        self.assertEqual((batch.fired, batch.callbacks), (0, {}))
        self.assertEqual((batch.callback_worker, batch.callback_queue),
                         (w.EveryHandler.worker_path, CB))

    def test_scheduled_at_and_the_worker_defaults(self):
        at = timezone.now() + datetime.timedelta(days=1)
        _jobs, batch_id = self.new_batch([{}, {}], scheduled_at=at)
        for job in Job.objects.filter(batch=batch_id):
            self.assertEqual((job.state, job.scheduled_at, job.queue, job.max_attempts),
                             (SCHEDULED, at, QUEUE, w.EveryHandler.max_attempts))

    def test_the_batch_id_is_a_uuid7_in_every_members_meta(self):
        before_ms = int(time.time() * 1000)
        ids = []
        for _ in range(5):
            jobs = w.EveryHandler.new_batch([{"n": i} for i in range(4)])
            self.assertEqual({batch_of(job) for job in jobs}, {batch_of(jobs[0])})
            ids.append(batch_of(jobs[0]))
        after_ms = int(time.time() * 1000)
        self.assertEqual(len(set(ids)), 5, "each batch has its own id")
        for batch_id in ids:
            value = uuid.UUID(batch_id)
            self.assertEqual(str(value), batch_id, "the canonical form")
            self.assertEqual(value.version, 7)
            self.assertEqual(value.variant, uuid.RFC_4122)
            self.assertTrue(before_ms <= value.int >> 80 <= after_ms,
                            "the first 48 bits are the Unix time in ms")

    def test_uuid7_ids_increase_from_one_millisecond_to_the_next(self):
        ids = []
        for _ in range(20):
            ids.append(w.EveryHandler.gen_id())
            time.sleep(0.002)
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 20)

    # Within one millisecond the random bits increase (RFC 9562's monotonic random).
    def test_uuid7_ids_sort_by_creation_even_within_a_millisecond(self):
        ids = [uuid7() for _ in range(1000)]
        self.assertEqual(len(set(ids)), 1000)
        backwards = sum(later <= earlier for earlier, later in itertools.pairwise(ids))
        self.assertEqual(backwards, 0, "ids made one after the other that are not greater than "
                                       "the one before")

    def test_gen_id_can_be_overridden(self):
        first = w.CustomIdWorker.new_batch([{}, {}])
        second = w.CustomIdWorker.new_batch([{}])
        self.assertRegex(batch_of(first[0]), r"^custom-\d+-\d+$")
        self.assertNotEqual(batch_of(first[0]), batch_of(second[0]))
        inserted = insert_all(first)
        self.assertEqual(ledger(batch_of(inserted[0])).members, 2)

    def test_an_explicit_batch_id(self):
        jobs, batch_id = self.new_batch([{}, {}], batch_id="mailing-42")
        self.assertEqual(batch_id, "mailing-42")
        self.assertEqual(sorted(Job.objects.filter(batch="mailing-42").values_list(
            "pk", flat=True)), [j.pk for j in jobs])
        self.assertEqual(ledger("mailing-42").members, 2)

    def test_jobs_of_several_workers_need_a_callback_worker(self):
        for call in (lambda jobs: django_jobs.new_batch(jobs),
                     lambda jobs: w.MailingWorker.new_batch(jobs)):
            jobs = [w.MailingWorker.new({"n": 1}), w.PlainMember.new({"n": 2})]
            with self.subTest(), self.assertRaisesRegex(
                    InvalidJobError, r"batch_callback_worker") as caught:
                call(jobs)
            self.assertIn(w.MailingWorker.worker_path, str(caught.exception))
            self.assertIn(w.PlainMember.worker_path, str(caught.exception))
        self.assertEqual(Batch.objects.count(), 0)

    def test_a_heterogeneous_batch_with_its_callback_worker(self):
        for callback_worker in (w.CallbackOnly, w.CallbackOnly.worker_path):
            with self.subTest(callback_worker=callback_worker):
                jobs = [w.MailingWorker.new({"n": 1}), w.PlainMember.new({"n": 2}),
                        w.EveryHandler.new({"n": 3}, priority=5)]
                built = django_jobs.new_batch(jobs, batch_callback_worker=callback_worker)
                batch_id = batch_of(built[0])
                self.assertEqual([batch_of(job) for job in built], [batch_id] * 3)
                self.assertEqual(built[2].priority, 5, "the job keeps its own options")
                insert_all(built)
                batch = ledger(batch_id)
                self.assertEqual((batch.members, batch.callback_worker, batch.callback_queue),
                                 (3, w.CallbackOnly.worker_path, w.CallbackOnly.queue))

    def test_a_callback_worker_without_handlers_is_refused(self):
        cases = {
            "a batch worker with none": lambda: w.NoHandler.new_batch([{}]),
            "as the callback worker": lambda: django_jobs.new_batch(
                [w.PlainMember.new({})], batch_callback_worker=w.NoHandler),
        }
        for label, call in cases.items():
            with self.subTest(label), self.assertRaisesRegex(InvalidJobError,
                                                             r"defines no handler"):
                call()

    def test_a_worker_that_is_not_a_batch_worker_is_refused_as_callback_worker(self):
        for callback_worker in (w.PlainWithHandler, w.PlainWithHandler.worker_path,
                                w.PlainMember):
            jobs = [w.PlainMember.new({}), w.MailingWorker.new({})]
            with self.subTest(callback_worker=callback_worker), self.assertRaisesMessage(
                    InvalidJobError, "is not a BatchWorker: callback jobs run "
                                     "BatchWorker.perform, which calls the handler") as caught:
                django_jobs.new_batch(jobs, batch_callback_worker=callback_worker)
            self.assertIn("batch callback worker tests.batch_workers.Plain",
                          str(caught.exception))
        with self.assertRaisesMessage(InvalidJobError, "is not a BatchWorker"):
            w.MailingWorker.new_batch([{}], batch_callback_worker=w.PlainWithHandler)
        self.assertEqual((Batch.objects.count(), Job.objects.count()), (0, 0))

    def test_bad_calls_are_refused_clearly(self):
        cases = {
            "no job": (lambda: w.EveryHandler.new_batch([]), r"at least one job"),
            "options with built jobs": (
                lambda: w.EveryHandler.new_batch([w.EveryHandler.new({})], priority=1),
                r"apply to args"),
            "args without a worker": (lambda: django_jobs.new_batch([{"n": 1}]),
                                      r"needs the worker"),
            "callback args not a dict": (
                lambda: w.EveryHandler.new_batch([{}], batch_callback_args=[1]),
                r"batch_callback_args must be a dict"),
            "callback meta not JSON": (
                lambda: w.EveryHandler.new_batch([{}], batch_callback_meta={"x": object()}),
                r"batch_callback_meta"),
            "a bad callback queue": (
                lambda: w.EveryHandler.new_batch([{}], batch_callback_queue=" "), r"queue"),
            "a bad job option": (lambda: w.EveryHandler.new_batch([{}], priority=12),
                                 r"priority"),
        }
        for label, (call, message) in cases.items():
            with self.subTest(label), self.assertRaisesRegex(InvalidJobError, message):
                call()

    def test_joining_later_a_batch_scheduled_for_midnight(self):
        """The seed: members scheduled for midnight, more appended during the day with
        new(..., batch_id=...); the handlers fire once, after every member ran."""
        batch_id = w.EveryHandler.gen_id()
        midnight = (timezone.now() + datetime.timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        first, _ = self.new_batch([{"n": 0}, {"n": 1}], batch_id=batch_id,
                                  scheduled_at=midnight, batch_callback_args={"mailing": 7})
        late = w.EveryHandler.enqueue({"n": 2}, batch_id=batch_id, scheduled_at=midnight)
        later = w.PlainMember.enqueue({"n": 3}, meta={"batch_id": batch_id},
                                      scheduled_at=midnight)
        self.assertEqual(batch_of(late), batch_id)
        batch = ledger(batch_id)
        self.assertEqual(batch.members, 4)
        # Joining does not change the batch's callback settings.
        self.assertEqual((batch.callback_args, batch.callback_queue), ({"mailing": 7}, CB))
        self.assertEqual([j.pk for j in all_batch_jobs(first[0])],
                         [first[0].pk, first[1].pk, late.pk, later.pk])
        self.assertEqual(self.run_members(with_scheduled=False)["completed"], 0)
        self.assertFired(batch_id)
        self.run_members(with_scheduled=midnight)
        self.assertEqual(states([*first, late, later]), [COMPLETED] * 4)
        self.assertFired(batch_id, *EVERY)
        self.assertEqual({job.args["mailing"] for job in callback_jobs(batch_id)}, {7})
        self.assertLedgerExact(batch_id)

    def test_a_batch_started_by_new_with_a_batch_id(self):
        job = w.EveryHandler.enqueue({}, batch_id="started-by-new")
        batch = ledger("started-by-new")
        self.assertEqual((batch.members, batch.callback_worker, batch.callback_queue),
                         (1, w.EveryHandler.worker_path, QUEUE))
        drain_queue(QUEUE, with_recursion=True)  # the member, then its callbacks
        self.assertEqual(states([job]), [COMPLETED])
        self.assertFired("started-by-new", *EVERY)
        self.assertEqual({cb.queue for cb in callback_jobs("started-by-new")}, {QUEUE})
        self.assertEqual({cb.state for cb in callback_jobs("started-by-new")}, {COMPLETED})


# -- callback jobs, members, status -------------------------------------------------------------


class CallbackTests(BatchAssertions, TestCase):
    def test_each_handler_is_a_job_of_its_own_in_the_callback_queue(self):
        _jobs, batch_id = self.new_batch([{}, {}], batch_callback_args={"mailing": 42},
                                        batch_callback_meta={"origin": "test"})
        self.run_members()
        callbacks = callback_jobs(batch_id)
        self.assertEqual(sorted(cb.meta["batch_callback"] for cb in callbacks), sorted(EVERY))
        for cb in callbacks:
            self.assertEqual((cb.worker, cb.queue, cb.state, cb.args),
                             (w.EveryHandler.worker_path, CB, AVAILABLE, {"mailing": 42}))
            self.assertEqual(cb.meta, {"origin": "test", "batch_id": batch_id,
                                       "batch_callback": cb.meta["batch_callback"]})
            self.assertIsNone(cb.batch, "a callback job is not a member")
        self.assertEqual(self.run_callbacks()["completed"], 3)
        for cb in callback_jobs(batch_id):
            handler = cb.meta["batch_callback"]
            self.assertEqual(cb.state, COMPLETED)
            self.assertEqual(fetch_recorded(cb), {
                "handler": handler, "batch_callback": handler, "batch_id": batch_id,
                "args": {"mailing": 42}, "meta": {"origin": "test", "batch_id": batch_id,
                                                  "batch_callback": handler}})
        # Callback jobs never count: inserting and running them left the ledger alone.
        self.assertEqual(counters(ledger(batch_id)), {
            "members": 2, "attempted": 2, "completed": 2, "cancelled": 0, "discarded": 0,
            "retryable": 0})
        self.assertLedgerExact(batch_id)

    def test_callback_jobs_are_not_members(self):
        jobs, batch_id = self.new_batch([{"n": i} for i in range(5)])
        self.run_members()
        self.assertEqual(len(callback_jobs(batch_id)), 3)
        member_ids = [job.pk for job in jobs]
        for probe in (jobs[3], callback_jobs(batch_id)[0]):
            self.assertEqual([j.pk for j in all_batch_jobs(probe)], member_ids)
            self.assertEqual([j.pk for j in stream_batch_jobs(probe, chunk_size=2)], member_ids)
        other, _ = self.new_batch([{}])
        self.assertEqual([j.pk for j in all_batch_jobs(other[0])], [other[0].pk])
        with self.assertRaisesRegex(InvalidJobError, r"belongs to no batch"):
            all_batch_jobs(w.PlainMember.enqueue({}))

    def test_the_callback_queue_defaults_to_the_callback_workers(self):
        jobs = insert_all(w.EveryHandler.new_batch([{}]))
        drain_queue(QUEUE, with_recursion=True)
        self.assertEqual({cb.queue for cb in callback_jobs(batch_of(jobs[0]))}, {QUEUE})
        jobs = insert_all(django_jobs.new_batch([w.PlainMember.new({})],
                                                batch_callback_worker=w.CallbackOnly))
        drain_queue(QUEUE)
        self.assertEqual({cb.queue for cb in callback_jobs(batch_of(jobs[0]))}, {CB})

    def test_a_heterogeneous_batch_runs_its_callback_workers_handlers(self):
        jobs, batch_id = self.new_batch_of(
            [w.PlainMember.new({"fail": True}, max_attempts=1), w.MailingWorker.new({}),
             w.EveryHandler.new({})], batch_callback_worker=w.CallbackOnly,
            batch_callback_args={"g": 1})
        self.run_members()
        self.assertEqual(states(jobs), [DISCARDED, COMPLETED, COMPLETED])
        self.assertFired(batch_id, "handle_attempted", "handle_discarded", "handle_exhausted")
        self.assertEqual({cb.worker for cb in callback_jobs(batch_id)},
                         {w.CallbackOnly.worker_path})
        self.assertEqual(self.run_callbacks()["completed"], 3)
        self.assertEqual({fetch_recorded(cb)["handler"] for cb in callback_jobs(batch_id)},
                         {"handle_attempted", "handle_discarded", "handle_exhausted"})
        self.assertLedgerExact(batch_id)

    def test_a_plain_callback_worker_never_runs_perform_in_a_handlers_place(self):
        # A ledger written before new_batch refused plain callback workers: at completion
        # its callback job used to run PlainWithHandler.perform (never handle_completed).
        # Now no callback job is inserted, and the reason is logged.
        w.PlainWithHandler.ran.clear()
        jobs, batch_id = self.new_batch([{}, {}], worker=w.CompletedOnly)
        Batch.objects.filter(pk=batch_id).update(
            callback_worker=w.PlainWithHandler.worker_path)
        with self.assertLogs("django_jobs.batch", "ERROR") as logs:
            self.run_members()
        self.assertEqual(states(jobs), [COMPLETED, COMPLETED])
        self.assertEqual(len(logs.output), 1)
        self.assertIn(f"batch {batch_id}: handle_completed cannot run: "
                      f"{w.PlainWithHandler.worker_path} is not a BatchWorker", logs.output[0])
        self.assertEqual(fired(batch_id), Counter())
        self.run_callbacks()
        drain_queue(w.CALLBACK_QUEUE)
        self.assertEqual(w.PlainWithHandler.ran, [])

    def test_only_the_handlers_the_worker_defines_run(self):
        _jobs, batch_id = self.new_batch([{"cancel": True}, {}], worker=w.CompletedOnly)
        self.run_members()
        batch = ledger(batch_id)
        # exhausted and cancelled are due (their bits say so) but CompletedOnly defines
        # neither: no job.
        self.assertTrue(batch.has_fired("handle_exhausted"))
        self.assertTrue(batch.has_fired("handle_cancelled"))
        self.assertEqual(fired(batch_id), Counter())
        self.assertEqual(list(batch_status(batch_id).handlers), ["handle_completed"])

    def test_a_failing_callback_is_retried_and_never_inserted_again(self):
        _jobs, batch_id = self.new_batch([{}, {}], batch_callback_args={
            "fail_handler": "handle_completed"})
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        first = self.run_callbacks()
        self.assertEqual((first["completed"], first["failed"]), (2, 1))
        self.assertTrue(batch_status(batch_id).handlers["handle_completed"].startswith(
            "failed"), batch_status(batch_id).handlers)
        self.assertFired(batch_id, *EVERY)
        self.assertEqual(self.run_callbacks(with_scheduled=True)["completed"], 1)
        [completed] = [cb for cb in callback_jobs(batch_id)
                       if cb.meta["batch_callback"] == "handle_completed"]
        self.assertEqual((completed.state, completed.attempt), (COMPLETED, 2))
        self.assertFired(batch_id, *EVERY)
        self.assertEqual(batch_status(batch_id).handlers["handle_completed"], "completed")
        self.assertLedgerExact(batch_id)

    def test_batch_status(self):
        members = [w.EveryHandler.new({}), w.EveryHandler.new({"fail": True}),
                   w.EveryHandler.new({"discard": True}),
                   w.EveryHandler.new({}, schedule_in=3600)]
        jobs, batch_id = self.new_batch_of(members, batch_callback_args={
            "fail_handler": "handle_retryable"})
        status = batch_status(batch_id)
        self.assertEqual(status.counts, {"members": 4, "attempted": 0, "completed": 0,
                                         "cancelled": 0, "discarded": 0, "retryable": 0,
                                         "pending": 4})
        self.assertEqual(status.progress, 0.0)
        self.assertEqual(status.handlers, {name: "pending" for name in HANDLERS})
        self.run_members(with_scheduled=False)
        self.assertEqual(states(jobs), [COMPLETED, RETRYABLE, DISCARDED, SCHEDULED])
        status = batch_status(batch_id)
        self.assertEqual(status.counts, {"members": 4, "attempted": 3, "completed": 1,
                                         "cancelled": 0, "discarded": 1, "retryable": 1,
                                         "pending": 1})
        self.assertEqual(status.progress, 0.5)
        self.assertEqual(status.batch.pk, batch_id)
        handlers = status.handlers
        for name in ("handle_attempted", "handle_completed", "handle_exhausted",
                     "handle_cancelled"):
            self.assertEqual(handlers[name], "pending", name)
        for name in ("handle_discarded", "handle_retryable"):
            self.assertTrue(handlers[name].startswith("fired"), handlers)
        self.run_callbacks()
        handlers = batch_status(batch_id).handlers
        self.assertEqual(handlers["handle_discarded"], "completed")
        self.assertTrue(handlers["handle_retryable"].startswith("failed"), handlers)
        self.assertEqual(handlers["handle_completed"], "pending")

    def test_inline_mode_keeps_no_ledger_and_fires_nothing(self):
        with with_testing_mode("inline"):
            done = insert_all(w.EveryHandler.new_batch([{"n": 1}, {"n": 2}],
                                                       batch_callback_queue=CB))
        self.assertEqual([job.state for job in done], [COMPLETED, COMPLETED])
        self.assertEqual((Batch.objects.count(), Job.objects.count()), (0, 0))

    def test_progress_of_a_finished_batch(self):
        _jobs, batch_id = self.new_batch([{}, {"cancel": True}, {"discard": True}])
        self.run_members()
        status = batch_status(batch_id)
        self.assertEqual(status.progress, 1.0)
        self.assertEqual((status.counts["pending"], status.counts["completed"],
                          status.counts["cancelled"], status.counts["discarded"]), (0, 1, 1, 1))


# -- what each handler means --------------------------------------------------------------------


class HandlerTests(BatchAssertions, TestCase):
    def test_every_member_completes(self):
        jobs, batch_id = self.new_batch([{"n": i} for i in range(3)])
        self.run_members(with_limit=2)
        self.assertEqual(states(jobs), [COMPLETED, COMPLETED, AVAILABLE])
        self.assertFired(batch_id)
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        self.assertLedgerExact(batch_id)

    def test_members_failing_then_succeeding(self):
        jobs, batch_id = self.new_batch([{"fail_once": True}, {"fail_once": True}, {}])
        self.run_members(with_scheduled=False)
        self.assertEqual(states(jobs), [RETRYABLE, RETRYABLE, COMPLETED])
        # The first retryable member fired handle_retryable, the second nothing; every member
        # was attempted.
        self.assertFired(batch_id, "handle_retryable", "handle_attempted")
        self.assertEqual(ledger(batch_id).retryable, 2)
        self.run_members()
        self.assertEqual(states(jobs), [COMPLETED] * 3)
        self.assertFired(batch_id, "handle_retryable", *EVERY)
        self.assertEqual(ledger(batch_id).retryable, 0)
        self.assertLedgerExact(batch_id)

    def test_a_snoozed_member_is_attempted_and_finishes_later(self):
        jobs, batch_id = self.new_batch([{"snooze": True}, {}])
        self.run_members(with_scheduled=False)
        self.assertEqual(states(jobs), [SCHEDULED, COMPLETED])
        self.assertFired(batch_id, "handle_attempted")
        self.assertLedgerExact(batch_id)
        self.run_members()
        self.assertEqual(states(jobs), [COMPLETED, COMPLETED])
        self.assertFired(batch_id, *EVERY)
        self.assertLedgerExact(batch_id)

    def test_cancelled_members(self):
        jobs, batch_id = self.new_batch([{"cancel": True}, {"cancel": True}, {}])
        self.assertTrue(control.cancel_job(jobs[2]))  # never attempted
        self.assertFired(batch_id, "handle_cancelled")
        self.run_members()
        self.assertEqual(states(jobs), [CANCELLED] * 3)
        # Every member finished (exhausted); none completed; the one cancelled before it ran
        # was never attempted.
        self.assertFired(batch_id, "handle_cancelled", "handle_exhausted")
        self.assertLedgerExact(batch_id)

    def test_an_executing_member_cancelled_from_outside(self):
        jobs, batch_id = self.new_batch([{}, {}])
        [running] = fetch(limit=1)
        self.assertTrue(control.cancel_job(running))
        self.assertFired(batch_id, "handle_cancelled")
        # The node's late ack of that attempt changes nothing.
        complete(running)
        self.assertEqual(states(jobs), [CANCELLED, AVAILABLE])
        self.assertLedgerExact(batch_id)
        self.run_members()
        self.assertFired(batch_id, "handle_cancelled", "handle_attempted", "handle_exhausted")
        self.assertLedgerExact(batch_id)

    def test_discarded_members(self):
        jobs, batch_id = self.new_batch([{"discard": True}, {"fail": True}, {}],
                                        max_attempts=1)
        self.run_members()
        self.assertEqual(states(jobs), [DISCARDED, DISCARDED, COMPLETED])
        self.assertFired(batch_id, "handle_discarded", "handle_attempted", "handle_exhausted")
        self.assertLedgerExact(batch_id)

    def test_a_discarded_member_retried_by_hand_completes_the_batch(self):
        jobs, batch_id = self.new_batch([{"fail": True}, {}], max_attempts=2)
        self.run_members()
        self.assertEqual(states(jobs), [DISCARDED, COMPLETED])
        self.assertFired(batch_id, "handle_retryable", "handle_attempted", "handle_discarded",
                         "handle_exhausted")
        Job.objects.filter(pk=jobs[0].pk).update(args={})  # the cause was fixed
        self.assertTrue(control.retry_job(jobs[0]))
        self.assertEqual(ledger(batch_id).discarded, 0)
        self.assertFired(batch_id, "handle_retryable", "handle_attempted", "handle_discarded",
                         "handle_exhausted")
        self.run_members()
        self.assertEqual(states(jobs), [COMPLETED, COMPLETED])
        # handle_completed now fires, once; the "every member" handlers that fired already
        # (attempted, exhausted) do not fire again.
        self.assertFired(batch_id, "handle_retryable", "handle_attempted", "handle_discarded",
                         "handle_exhausted", "handle_completed")
        self.assertLedgerExact(batch_id)

    def test_a_completed_member_run_again_never_counts_twice(self):
        jobs, batch_id = self.new_batch([{}, {}, {}])
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        for _ in range(2):
            self.assertTrue(control.retry_job(jobs[0]))
            self.assertEqual(ledger(batch_id).completed, 2)
            self.run_members()
            self.assertEqual(ledger(batch_id).completed, 3)
        self.assertFired(batch_id, *EVERY)
        self.assertLedgerExact(batch_id)

    def test_a_put_back_at_shutdown_is_not_an_attempt(self):
        _jobs, batch_id = self.new_batch([{}, {}])
        running = fetch()
        self.assertEqual(len(running), 2)
        # What a stopping node writes for the jobs it interrupted.
        ack([put_back(job, timezone.now(), "Interrupted: the node shut down.")
                          for job in running])
        self.assertEqual(list(Job.objects.filter(batch=batch_id).values_list(
            "state", "attempt")), [(AVAILABLE, 0)] * 2)
        self.assertEqual(ledger(batch_id).attempted, 0)
        self.assertFired(batch_id)
        self.assertLedgerExact(batch_id)
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        self.assertLedgerExact(batch_id)

    # A put-back gives its attempt back (attempt - 1): a second attempt put back leaves
    # attempt 1, and the member, attempted once already, must not count a second time.
    def test_a_put_back_of_a_second_attempt_does_not_count_again(self):
        members = [w.EveryHandler.new({"fail_once": True}),
                   w.EveryHandler.new({}, schedule_in=3600)]  # never attempted
        jobs, batch_id = self.new_batch_of(members)
        self.run_members(with_scheduled=False)
        self.assertEqual(states(jobs), [RETRYABLE, SCHEDULED])
        self.assertEqual(ledger(batch_id).attempted, 1)
        stage_jobs(timezone.now() + datetime.timedelta(seconds=1), 10)
        [second] = fetch(ids=[jobs[0].pk])
        self.assertEqual(second.attempt, 2)
        ack([put_back(second, timezone.now(), "Interrupted: the node shut down.")])
        self.assertEqual(ledger(batch_id).attempted, 1)
        self.assertFired(batch_id, "handle_retryable")
        self.assertLedgerExact(batch_id)

    def test_a_rescued_attempt_counts(self):
        _jobs, batch_id = self.new_batch([{}, {}])
        [orphan] = fetch(limit=1, by=("dead-node", str(uuid.uuid4())))
        self.run_members(with_scheduled=False)  # the other one
        self.assertFired(batch_id)
        now = timezone.now()
        result = rescue_orphans(now, now)
        self.assertEqual(result["rescued"], 1)
        self.assertEqual(states([orphan]), [AVAILABLE])
        self.assertEqual(ledger(batch_id).attempted, 2)
        self.assertFired(batch_id, "handle_attempted")
        self.assertLedgerExact(batch_id)
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        self.assertLedgerExact(batch_id)

    def test_a_rescued_member_out_of_attempts_is_discarded(self):
        _jobs, batch_id = self.new_batch([{}], max_attempts=1)
        fetch(by=("dead-node", str(uuid.uuid4())))
        now = timezone.now()
        self.assertEqual(rescue_orphans(now, now)["discarded"], 1)
        self.assertFired(batch_id, "handle_discarded", "handle_attempted", "handle_exhausted")
        self.assertLedgerExact(batch_id)

    def test_the_first_member_handlers_fire_once(self):
        _jobs, batch_id = self.new_batch(
            [{"fail_once": True}] * 3 + [{"discard": True}] * 3 + [{"cancel": True}] * 3)
        self.run_members(with_scheduled=False)
        self.assertFired(batch_id, "handle_retryable", "handle_discarded", "handle_cancelled",
                         "handle_attempted")
        self.run_members()
        self.assertFired(batch_id, "handle_retryable", "handle_discarded", "handle_cancelled",
                         "handle_attempted", "handle_exhausted")
        self.assertLedgerExact(batch_id)

    def test_members_joining_after_an_every_member_handler_fired(self):
        """The documented behaviour: a late member counts, the handlers that fired do not fire
        again; a first-member handler that had not fired still can."""
        _jobs, batch_id = self.new_batch([{}, {}])
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        late = [w.EveryHandler.enqueue({}, batch_id=batch_id),
                w.EveryHandler.enqueue({"discard": True}, batch_id=batch_id)]
        self.assertEqual(ledger(batch_id).members, 4)
        self.run_members()
        self.assertEqual(states(late), [COMPLETED, DISCARDED])
        self.assertFired(batch_id, *EVERY, "handle_discarded")
        self.assertEqual((ledger(batch_id).completed, ledger(batch_id).discarded), (3, 1))
        self.assertLedgerExact(batch_id)

    # A BatchWorker job inserted outside any batch (no batch_id) is a plain job.
    def test_a_batch_worker_job_outside_any_batch_runs_as_a_plain_job(self):
        try:
            job = w.EveryHandler.enqueue({"n": 1})
        except InvalidJobError:
            return  # refusing it clearly would be fine too
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        self.assertEqual(states([job]), [COMPLETED])
        self.assertEqual(Batch.objects.count(), 0)


# -- deletes, the pruner ------------------------------------------------------------------------


class DeleteTests(BatchAssertions, TestCase):
    def test_deleting_members_uncounts_them_and_fires_nothing(self):
        members = [w.EveryHandler.new({}), w.EveryHandler.new({"fail": True}, max_attempts=1),
                   w.EveryHandler.new({"fail_once": True}), w.EveryHandler.new({}),
                   w.EveryHandler.new({}, schedule_in=3600)]
        jobs, batch_id = self.new_batch_of(members)
        self.run_members(with_scheduled=False)
        self.assertEqual(states(jobs), [COMPLETED, DISCARDED, RETRYABLE, COMPLETED, SCHEDULED])
        before = fired(batch_id)
        self.assertEqual(before, Counter(["handle_discarded", "handle_retryable"]))
        for job in jobs[:3]:  # a completed, a discarded and a retryable member
            self.assertTrue(control.delete_job(job))
            self.assertEqual(fired(batch_id), before)
            self.assertLedgerExact(batch_id)
        self.assertEqual(counters(ledger(batch_id)), {
            "members": 2, "attempted": 1, "completed": 1, "cancelled": 0, "discarded": 0,
            "retryable": 0})

    # docs/batches.md: "Deleting members (the admin, delete_job, the pruner) uncounts them but
    # never fires a handler": the batch is judged at its next change.
    def test_deleting_the_member_that_kept_handlers_pending_fires_nothing(self):
        members = [w.EveryHandler.new({}), w.EveryHandler.new({}),
                   w.EveryHandler.new({}, schedule_in=3600)]
        jobs, batch_id = self.new_batch_of(members)
        self.run_members(with_scheduled=False)
        self.assertEqual(states(jobs), [COMPLETED, COMPLETED, SCHEDULED])
        self.assertTrue(control.delete_job(jobs[2]))
        self.assertEqual(ledger(batch_id).members, 2)
        self.assertFired(batch_id)
        # The batch is judged on what remains at its next change: a member joins and
        # completes.
        w.EveryHandler.enqueue({}, batch_id=batch_id)
        self.run_members()
        self.assertFired(batch_id, *EVERY)

    def backdate(self, job, days: int) -> None:
        """Make ``job`` finished ``days`` ago (for the pruner)."""
        at = timezone.now() - datetime.timedelta(days=days)
        Job.objects.filter(pk=job.pk).update(completed_at=at if job.state == COMPLETED
                                             else None, discarded_at=at if job.state ==
                                             DISCARDED else None)

    def prune(self, days: int = 1) -> int:
        """What the pruner does: delete members finished more than ``days`` ago."""
        return len(prune_jobs(timezone.now(), 1000, Retention(days * 86400)))

    def test_the_pruner_never_makes_a_fired_handler_fire_again(self):
        _jobs, batch_id = self.new_batch([{}, {}, {"discard": True}])
        self.run_members()
        handlers = ("handle_attempted", "handle_discarded", "handle_exhausted")
        self.assertFired(batch_id, *handlers)
        self.run_callbacks()
        for job in Job.objects.filter(batch=batch_id):
            self.backdate(job, 3)
        self.assertEqual(self.prune(), 3)
        self.assertEqual(Job.objects.filter(batch=batch_id).count(), 0)
        self.assertFired(batch_id, *handlers)
        self.assertEqual(counters(ledger(batch_id)), dict.fromkeys(COUNTERS, 0))
        self.assertEqual(self.prune(), 0)
        self.assertFired(batch_id, *handlers)
        self.assertEqual(sweep()["fired"], 0)
        self.assertFired(batch_id, *handlers)

    def test_pruning_the_completed_members_of_a_batch_fires_nothing(self):
        _jobs, batch_id = self.new_batch([{}, {}, {"discard": True}])
        self.run_members()
        for job in Job.objects.filter(batch=batch_id, state=COMPLETED):
            self.backdate(job, 3)
        self.assertEqual(self.prune(), 2)
        self.assertFired(batch_id, "handle_attempted", "handle_discarded", "handle_exhausted")
        self.assertLedgerExact(batch_id)

    # As with deletes: pruning the one discarded member of a batch whose other members all
    # completed must not make handle_completed fire.
    def test_pruning_the_discarded_member_fires_nothing(self):
        jobs, batch_id = self.new_batch([{"discard": True}, {}, {}])
        self.run_members()
        handlers = ("handle_attempted", "handle_discarded", "handle_exhausted")
        self.assertFired(batch_id, *handlers)
        self.backdate(Job.objects.get(pk=jobs[0].pk), 3)
        self.assertEqual(self.prune(), 1)
        self.assertFired(batch_id, *handlers)


# -- the sweep ----------------------------------------------------------------------------------


class SweepTests(BatchAssertions, TestCase):
    def raw(self, sql: str, params) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    def test_the_sweep_repairs_a_broken_ledger_and_fires_what_is_due_once(self):
        jobs, batch_id = self.new_batch([{}, {}, {}])
        # A phantom member: the ledger waits for a fourth member that does not exist.
        self.raw("UPDATE django_jobs_batch SET members = members + 1 WHERE id = %s", [batch_id])
        self.run_members()
        self.assertEqual(states(jobs), [COMPLETED] * 3)
        self.assertFired(batch_id)
        self.assertEqual(sweep(timezone.now())["recounted"], 0, "swept a batch just changed")
        with self.assertLogs("django_jobs.batch", "WARNING") as logs:
            self.assertEqual(sweep(), {"recounted": 1, "fired": 3})
        self.assertIn("1 ledgers recounted, 3 handlers fired", logs.output[0])
        self.assertFired(batch_id, *EVERY)
        self.assertEqual(ledger(batch_id).members, 3)
        self.assertLedgerExact(batch_id)
        self.assertEqual(sweep(), {"recounted": 0, "fired": 0})
        self.assertFired(batch_id, *EVERY)
        self.assertEqual(self.run_callbacks()["completed"], 3)

    def test_the_sweep_repairs_counters_without_firing_what_is_not_due(self):
        members = [w.EveryHandler.new({}), w.EveryHandler.new({}, schedule_in=3600)]
        _jobs, batch_id = self.new_batch_of(members)
        self.run_members(with_scheduled=False)
        self.raw("UPDATE django_jobs_batch SET completed = 7, retryable = 3, attempted = 0 "
                 "WHERE id = %s", [batch_id])
        with self.assertLogs("django_jobs.batch", "WARNING"):
            self.assertEqual(sweep(), {"recounted": 1, "fired": 0})
        self.assertEqual(counters(ledger(batch_id)), {
            "members": 2, "attempted": 1, "completed": 1, "cancelled": 0, "discarded": 0,
            "retryable": 0})
        self.assertFired(batch_id)
        # The ledger is right again: the last member completes the batch through the ack.
        self.run_members()
        self.assertFired(batch_id, *EVERY)
        self.assertLedgerExact(batch_id)

    def test_the_sweep_leaves_healthy_and_closed_batches_alone(self):
        _healthy, healthy_id = self.new_batch_of([w.EveryHandler.new({}),
                                                 w.EveryHandler.new({}, schedule_in=3600)])
        _closed, closed_id = self.new_batch([{}])
        self.run_members()
        self.assertFired(closed_id, *EVERY)
        # A closed batch (exhausted fired) is not recounted, however wrong its counters.
        self.raw("UPDATE django_jobs_batch SET completed = 0 WHERE id = %s", [closed_id])
        before = fired(healthy_id)
        self.assertEqual(sweep(), {"recounted": 0, "fired": 0})
        self.assertEqual(fired(healthy_id), before)
        self.assertEqual(ledger(closed_id).completed, 0)


# -- members in constant memory -----------------------------------------------------------------


class StreamTests(BatchAssertions, TestCase):
    MEMBERS = 20_000
    LISTED = 2_000

    def traced_peak(self, function) -> tuple[object, int]:
        """``function()`` and the peak of memory it allocated (tracemalloc)."""
        tracemalloc.start()
        try:
            result = function()
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def test_stream_batch_jobs_runs_in_constant_memory(self):
        """Streaming 20,000 members peaks below what listing a batch of 2,000 takes (memory
        bounded by the chunk, not the batch). (Tracing allocations makes loading jobs about
        five times slower: the list is taken of the small batch.)"""
        jobs = insert_all(w.EveryHandler.new_batch([{"n": i} for i in range(self.MEMBERS)]))
        first, ids = jobs[0], [job.pk for job in jobs]
        del jobs
        small = insert_all(w.EveryHandler.new_batch([{"n": i} for i in range(self.LISTED)]))

        def stream():
            seen, last = 0, 0
            for job in stream_batch_jobs(first, chunk_size=500):
                if job.pk <= last:
                    return f"job {job.pk} came after job {last}"
                seen, last = seen + 1, job.pk
            return seen, last

        streamed, stream_peak = self.traced_peak(stream)
        self.assertEqual(streamed, (self.MEMBERS, ids[-1]))
        listed, list_peak = self.traced_peak(lambda: all_batch_jobs(small[0]))
        self.assertEqual([job.pk for job in listed], [job.pk for job in small])
        self.assertLess(stream_peak, list_peak / 2,
                        f"streaming {self.MEMBERS} members peaked at {stream_peak / 1e6:.1f} MB, "
                        f"listing {self.LISTED} at {list_peak / 1e6:.1f} MB")


# -- the cost of tracking -----------------------------------------------------------------------


class AckCostTests(BatchAssertions, TestCase):
    def ack_statements(self, acked: int, members: int) -> tuple[list, list[str]]:
        """Ack ``acked`` completions of one batch of ``members`` in one Engine.ack; return the
        statements the database ran and the SQL sent through Django."""
        jobs, batch_id = self.new_batch([{"n": i} for i in range(members)],
                                        worker=w.RaceWorker)
        running = fetch(limit=acked, ids=[job.pk for job in jobs[:acked]])
        self.assertEqual(len(running), acked)
        with CaptureQueriesContext(connection) as queries, count_statements() as statements:
            complete(*running)
        self.assertEqual(ledger(batch_id).completed, acked)
        self.assertLedgerExact(batch_id)
        return statements, [query["sql"] for query in queries.captured_queries]

    def assertNoCount(self, sql: list[str]) -> None:
        for text in sql:
            self.assertNotIn("COUNT(", text.upper(), "a count in the ack")

    def test_acking_n_completions_of_one_batch_costs_the_same_whatever_n(self):
        few, few_sql = self.ack_statements(2, 3)
        many, many_sql = self.ack_statements(400, 401)
        self.assertEqual(len(few), len(many), f"{few}\n{many}")
        self.assertLessEqual(len(many), 5, many)
        self.assertNoCount(few_sql + many_sql)

    def test_acking_the_last_members_with_their_callbacks_costs_the_same_whatever_n(self):
        few, few_sql = self.ack_statements(3, 3)
        many, many_sql = self.ack_statements(400, 400)
        self.assertEqual(len(few), len(many), f"{few}\n{many}")
        self.assertLessEqual(len(many), 10, many)
        self.assertNoCount(few_sql + many_sql)

    def test_acking_members_of_many_batches_at_once_costs_the_same_whatever_their_number(self):
        def statements(batches: int) -> list:
            members = []
            for _ in range(batches):
                jobs, _ = self.new_batch([{}, {}, {}], worker=w.RaceWorker)
                members += jobs[:2]
            running = fetch(limit=len(members), ids=[job.pk for job in members])
            with CaptureQueriesContext(connection) as queries, count_statements() as found:
                complete(*running)
            self.assertNoCount([query["sql"] for query in queries.captured_queries])
            return found

        few, many = statements(2), statements(60)
        self.assertEqual(len(few), len(many), f"{few}\n{many}")
        self.assertLessEqual(len(many), 5, many)

    def test_one_ack_costs_the_same_in_a_small_and_a_large_batch(self):
        small, small_sql = self.ack_statements(1, 5)
        large, large_sql = self.ack_statements(1, 3000)
        self.assertEqual(len(small), len(large), f"{small}\n{large}")
        self.assertNoCount(small_sql + large_sql)


# -- the ledger never drifts --------------------------------------------------------------------


SEEDS = [int(x) for x in os.environ.get("BATCH_SEEDS", "1,2,3").split(",")]


class RandomRunTests(BatchAssertions, TestCase):
    """Random members (failing, snoozing, cancelling, discarding), drained a few at a time,
    with cancels (of waiting and of running members), retries, deletes, put-backs, rescues and
    late members from outside: after every step, every ledger recounts exactly; each handler
    fires at most once. Put-backs are of first and later attempts alike. Set
    BATCH_SEEDS=1,2,...,60 to run more seeds (about 1 s each)."""

    SCRIPTS = ({}, {}, {}, {"fail_once": True}, {"fail": True}, {"snooze": True},
               {"cancel": True}, {"discard": True})

    def members(self, rng, count) -> list[Job]:
        jobs = []
        for _ in range(count):
            args = dict(rng.choice(self.SCRIPTS))
            if rng.random() < 0.2:
                jobs.append(w.PlainMember.new({"fail": bool(args.get("fail"))},
                                              max_attempts=2))
            else:
                jobs.append(w.EveryHandler.new(args, max_attempts=rng.randint(1, 3)))
        return jobs

    def step(self, rng, batch_ids) -> None:
        now = timezone.now()
        action = rng.choice(["drain", "drain", "drain", "cancel", "cancel_running", "retry",
                             "delete", "put_back", "rescue", "join"])
        members = list(Job.objects.filter(batch__in=batch_ids).order_by("id"))
        if action == "drain":
            self.run_members(with_limit=rng.randint(1, 15))
        elif action == "cancel":
            candidates = [j for j in members if j.state not in (COMPLETED, DISCARDED,
                                                                CANCELLED)]
            if candidates:
                control.cancel_job(rng.choice(candidates))
        elif action == "cancel_running":  # cancelled from outside while it runs
            for job in fetch(limit=rng.randint(1, 3)):
                control.cancel_job(job)
                complete(job)  # the attempt's late ack changes nothing
        elif action == "retry":
            candidates = [j for j in members if j.state not in (AVAILABLE, EXECUTING)]
            if candidates:
                control.retry_job(rng.choice(candidates))
        elif action == "delete":
            candidates = [j for j in members if j.state != EXECUTING]
            if candidates and len(candidates) > 3:
                control.delete_job(rng.choice(candidates))
        elif action == "put_back":
            # Waiting members of any attempt: the node stopped before their attempt ended.
            fresh = [j.pk for j in members if j.state == AVAILABLE]
            running = fetch(limit=rng.randint(1, 4), ids=fresh) if fresh else []
            ack([put_back(job, now, "shutdown") for job in running])
        elif action == "rescue":
            fetch(limit=rng.randint(1, 4), by=("dead", str(uuid.uuid4())))
            rescue_orphans(timezone.now(), timezone.now())
        else:  # late members join a batch (through their meta: plain workers too)
            batch_id = rng.choice(batch_ids)
            late = self.members(rng, rng.randint(1, 2))
            for job in late:
                job.meta["batch_id"] = batch_id
            insert_all(late)

    def test_random_runs_keep_every_ledger_exact(self):
        for seed in SEEDS:
            with self.subTest(seed=seed):
                self.random_run(seed)

    def random_run(self, seed: int) -> None:
        rng = random.Random(seed)
        batch_ids = []
        for _n in range(8):
            jobs = insert_all(django_jobs.new_batch(self.members(rng, rng.randint(3, 12)),
                                                    batch_callback_worker=w.CallbackOnly))
            batch_ids.append(batch_of(jobs[0]))
        for _ in range(60):
            self.step(rng, batch_ids)
            for batch_id in batch_ids:
                self.assertLedgerExact(batch_id)
        self.run_members(with_recursion=True)
        self.run_members(with_recursion=True)
        for batch_id in batch_ids:
            batch = self.assertLedgerExact(batch_id)
            counts = fired(batch_id)
            self.assertEqual([h for h, n in counts.items() if n != 1], [],
                             f"handlers of {batch_id} that fired more than once")
            self.assertEqual(batch.callbacks, {cb.meta["batch_callback"]: cb.pk
                                               for cb in callback_jobs(batch_id)})
            for handler in counts:
                self.assertTrue(batch.has_fired(handler))
        self.assertEqual(Job.objects.filter(batch__isnull=False).exclude(
            state__in=(COMPLETED, DISCARDED, CANCELLED)).count(), 0, describe_jobs())


# -- races between connections ------------------------------------------------------------------


class ThreadRaceTests(BatchAssertions, TransactionTestCase):
    """Two connections write the last changes of a batch at the same instant (threads
    released by a barrier): each handler fires once, never twice, never not at all."""

    RACES = 40

    def prepare_batches(self, count: int, members: int = 3):
        """``count`` batches whose members are all executing; the first ``members - 2`` of
        each already completed. Returns [(batch id, [the two left, as fetched])]."""
        batches = []
        for _ in range(count):
            jobs, batch_id = self.new_batch([{"n": i} for i in range(members)],
                                            worker=w.RaceWorker)
            running = fetch(ids=[job.pk for job in jobs])
            complete(*running[:-2])
            batches.append((batch_id, running[-2:]))
        return batches

    def test_two_connections_ack_the_last_two_members_at_once(self):
        for batch_id, last in self.prepare_batches(self.RACES):
            race(2, lambda i, last=last: complete(last[i]), what="acks of the last members")
            self.assertFired(batch_id, *EVERY)
            self.assertLedgerExact(batch_id)

    def test_an_ack_and_a_cancel_of_the_last_two_members_at_once(self):
        def act(i, last):
            if i == 0:
                complete(last[0])
            else:
                control.cancel_job(last[1])

        for batch_id, last in self.prepare_batches(self.RACES // 2):
            race(2, lambda i, last=last: act(i, last), what="an ack and a cancel")
            self.assertFired(batch_id, "handle_attempted", "handle_exhausted")
            self.assertLedgerExact(batch_id)

    def test_concurrent_inserts_into_one_batch_add_up(self):
        def insert(i, n):
            insert_all(w.RaceWorker.new_batch([{"i": i, "k": k} for k in range(3)],
                                              batch_id=f"joined-{n}",
                                              batch_callback_queue=CB))

        for n in range(self.RACES // 4):
            race(2, lambda i, n=n: insert(i, n), what="two inserts into one batch")
            self.assertEqual(ledger(f"joined-{n}").members, 6)
            self.assertLedgerExact(f"joined-{n}")

    def test_stream_batch_jobs_outside_a_transaction(self):
        jobs, _batch_id = self.new_batch([{"n": i} for i in range(25)])
        self.assertFalse(connection.in_atomic_block)
        self.assertEqual([job.pk for job in stream_batch_jobs(jobs[0], chunk_size=4)],
                         [job.pk for job in jobs])

    def test_the_last_ack_and_the_sweep_at_once(self):
        def act(i, last):
            if i == 0:
                complete(last[0])
            else:
                sweep()

        for batch_id, last in self.prepare_batches(self.RACES // 2, members=2):
            complete(last[1])
            race(2, lambda i, last=last: act(i, last), what="the last ack and the sweep")
            self.assertFired(batch_id, *EVERY)
            self.assertLedgerExact(batch_id)


# -- real runjobs nodes -------------------------------------------------------------------------


class NodeTestCase(BatchAssertions, RunjobsMixin, TransactionTestCase):
    """Starts ``runjobs`` children; every child is killed when the test ends. Failures report
    the job counts and the tail of every child's output."""

    def report(self, message: str = "") -> str:
        try:
            state = f"jobs: {describe_jobs()}"
        except Exception as exc:  # the database itself may be the problem
            state = f"(the database is unreadable: {exc!r})"
        return RunjobsMixin.runjobs_report(self, "\n".join(filter(None, [message, state])))

    runjobs_report = report

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.1):
        return wait_until(predicate, timeout, what=what, interval=interval,
                          describe=self.report)

    def leader(self) -> str | None:
        holder = Peer.objects.filter(name=node_module.LEADER_NAME).values_list(
            "node", flat=True).first()
        return holder.rsplit(":", 1)[0] if holder else None

    def assertNoFailedAcks(self) -> None:
        """No node's acker failed a write (a deadlock between acks, say) and retried it."""
        for node in self.runjobs_processes:
            for text in ("deadlock", "job outcomes failed"):
                self.assertNotIn(text, node.log(), self.report(f"node {node.name}: {text}"))

    def all_in(self, jobs, state: str) -> bool:
        return Job.objects.filter(pk__in=[j.pk for j in jobs], state=state).count() == len(jobs)


class NodeTests(NodeTestCase):
    def test_a_node_runs_batches_and_their_callbacks_and_puts_back_at_shutdown(self):
        """One node (both databases): members that fail once and snooze, the callbacks run in
        the child; a member interrupted by the node's shutdown is put back, not attempted."""
        node = self.start_runjobs("solo", "--queue", f"{QUEUE}=5", "--queue", f"{CB}=5",
                                  "--grace", "0.3")
        jobs, batch_id = self.new_batch([{"fail_once": True}, {"snooze": True}, {},
                                         {"sleep": 0.05}], batch_callback_args={"m": 1})
        [long], long_id = self.new_batch([{"sleep": 60}])
        self.wait_for(lambda: len(callback_jobs(batch_id)) == 4
                      and self.all_in(callback_jobs(batch_id), COMPLETED), SLACK,
                      "the batch's four callbacks to complete")
        self.assertEqual(states(jobs), [COMPLETED] * 4)
        self.assertFired(batch_id, "handle_retryable", *EVERY)
        for cb in callback_jobs(batch_id):
            self.assertEqual(fetch_recorded(cb)["args"], {"m": 1})
            self.assertEqual(fetch_recorded(cb)["handler"], cb.meta["batch_callback"])
        self.assertLedgerExact(batch_id)

        self.wait_for(lambda: states([long]) == [EXECUTING], SLACK, "the long member to run")
        self.stop_runjobs(node, within=SLACK)
        self.assertEqual(list(Job.objects.filter(pk=long.pk).values_list("state", "attempt")),
                         [(AVAILABLE, 0)])
        self.assertEqual(ledger(long_id).attempted, 0)
        self.assertFired(long_id)
        self.assertLedgerExact(long_id)
        Job.objects.filter(pk=long.pk).update(args={})
        self.run_members()
        self.assertFired(long_id, *EVERY)


#: The race run: batches, members per batch (one per node), batches released at each instant,
#: and the step between instants (s).
RACE_BATCHES = 200
RACE_GROUP = 5
RACE_STEP = 0.1


@unittest.skipUnless(POSTGRES, "three nodes: PostgreSQL")
class NodeRaceTests(NodeTestCase):
    def test_the_last_members_of_200_batches_finish_together_on_three_nodes(self):
        """200 batches of three members, one on each of three nodes (each node runs its own
        queue); the three members of a batch wait for one shared instant, so their acks reach
        the database together and contend for the batch's row. Each batch gets exactly one
        callback per handler. About 8 s on two cores (up to ~60 s on a loaded machine)."""
        queues = [f"batch-race-{i}" for i in range(3)]
        nodes = [self.start_runjobs(f"racer{i}", "--queue", f"{queue}=10", wait=False)
                 for i, queue in enumerate(queues)]
        for node in nodes:
            self.wait_runjobs_started(node)
        start = time.monotonic() + 2.0
        members = []
        for b in range(RACE_BATCHES):
            release = start + (b // RACE_GROUP) * RACE_STEP
            members += w.RaceWorker.new_batch(
                [w.RaceWorker.new({"release_at": release, "b": b}, queue=queue)
                 for queue in queues], batch_callback_queue="batch-race-callbacks")
        jobs = insert_all(members)
        batch_ids = sorted({batch_of(job) for job in jobs})
        self.assertEqual(len(batch_ids), RACE_BATCHES)
        self.wait_for(lambda: self.all_in(jobs, COMPLETED), SLACK,
                      f"the {len(jobs)} members to complete")
        self.stop_runjobs(*nodes, within=SLACK)

        callbacks = Counter((cb.meta["batch_id"], cb.meta["batch_callback"])
                            for cb in callback_jobs())
        self.assertEqual(len(callbacks), RACE_BATCHES * 3)
        self.assertEqual([key for key, n in callbacks.items() if n != 1], [],
                         "handlers that fired more than once")
        self.assertEqual({batch_id for batch_id, _ in callbacks}, set(batch_ids))
        for batch in Batch.objects.filter(pk__in=batch_ids):
            self.assertEqual(batch.fired, sum(HANDLER_BITS[h] for h in EVERY))
            self.assertEqual(sorted(batch.callbacks), sorted(EVERY))
            self.assertEqual(counters(batch), {"members": 3, "attempted": 3, "completed": 3,
                                               "cancelled": 0, "discarded": 0,
                                               "retryable": 0})
            self.assertFalse(recount(batch, get_engine().alias))
        # The members of a batch did finish together (the race took place).
        ends: dict[str, list] = {}
        for job in Job.objects.filter(pk__in=[j.pk for j in jobs]):
            ends.setdefault(job.batch, []).append(job.completed_at)
        together = sum((max(at) - min(at)).total_seconds() < 0.05 for at in ends.values())
        self.assertGreaterEqual(together, RACE_BATCHES // 2,
                                f"only {together} batches had their members finish within "
                                f"50 ms of each other")
        self.assertNoFailedAcks()


#: Rounds of the kill test (each kills a node after a commit and one before).
KILL_ROUNDS = 3


@unittest.skipUnless(POSTGRES, "several nodes: PostgreSQL")
class NodeKillTests(NodeTestCase):
    def start_killer(self, name: str, mode: str, *args: str):
        os.environ["BATCH_TEST_KILL"] = mode
        try:
            return self.start_runjobs(name, *args, wait=False)
        finally:
            del os.environ["BATCH_TEST_KILL"]

    def test_nodes_killed_right_after_and_right_before_the_commit_of_the_last_ack(self):
        """Three nodes share the members and callbacks. In each of three rounds, one node
        SIGKILLs itself right after the commit of an ack that fired a batch's handlers (the
        callbacks were written with the ack), another right before the commit of an ack that
        completes a batch (the ack and its callbacks roll back; the lifeline gives the members
        to another node); both are replaced. Every handler of every batch fires exactly once,
        and the sweep finds nothing left to do. About 9 s on two cores."""
        args = ("--queue", "batch-kill=4", "--queue", "batch-kill-callbacks=4",
                "--rescue-after", "3")
        steady = self.start_runjobs("steady", *args)
        self.wait_for(lambda: self.leader() == "steady", SLACK, "the steady node to lead")
        members = []
        for b in range(60):
            members += w.RaceWorker.new_batch(
                [{"sleep": 0.2, "b": b, "m": m} for m in range(4)], queue="batch-kill",
                batch_callback_queue="batch-kill-callbacks")
        jobs: list[Job] = []
        for round in range(KILL_ROUNDS):
            after = self.start_killer(f"after-{round}", "after_commit", *args, "--no-plugins")
            before = self.start_killer(f"before-{round}", "before_commit", *args,
                                       "--no-plugins")
            for node in (after, before):
                self.wait_runjobs_started(node)
            if not jobs:
                jobs = insert_all(members)
            for node in (after, before):
                self.wait_for(lambda node=node: not node.alive(), SLACK,
                              f"node {node.name} to kill itself")
                self.assertEqual(node.process.returncode, -9, self.report())
        spares = [self.start_runjobs(f"spare-{i}", *args, "--no-plugins") for i in range(2)]
        batch_ids = sorted({batch_of(job) for job in jobs})

        def done() -> bool:
            callbacks = callback_jobs()
            return (self.all_in(jobs, COMPLETED) and len(callbacks) >= len(batch_ids) * 3
                    and self.all_in(callbacks, COMPLETED))

        self.wait_for(done, SLACK * 2, "every member and callback to complete", interval=0.5)
        self.stop_runjobs(steady, *spares, within=SLACK)
        for batch_id in batch_ids:
            self.assertFired(batch_id, *EVERY)
            self.assertLedgerExact(batch_id)
        self.assertEqual(sweep(), {"recounted": 0, "fired": 0})
        self.assertEqual(len(callback_jobs()), len(batch_ids) * 3)
        # The members the killed nodes were running came back through the lifeline (the one
        # whose ack was cut short before its commit among them).
        rescued = [job.pk for job in Job.objects.filter(pk__in=[j.pk for j in jobs])
                   if any(e["error"].startswith("Rescued") for e in job.errors)]
        self.assertGreaterEqual(len(rescued), KILL_ROUNDS, "members rescued")
        # Each node killed after the commit had completed the last member of a batch: that
        # batch's callbacks were written by its ack.
        last = {}
        for job in Job.objects.filter(pk__in=[j.pk for j in jobs]).order_by("completed_at"):
            last[job.batch] = job.attempted_by[0]
        for round in range(KILL_ROUNDS):
            self.assertIn(f"after-{round}", last.values(), Counter(last.values()))
        self.assertNoFailedAcks()
