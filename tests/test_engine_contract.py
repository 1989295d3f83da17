"""The engine contract: what ``django_jobs.engines.base.Engine`` promises, on every database.

Every test here runs against the engine of the database the suite runs on (``get_engine()``),
and CI runs the suite once per database: one set of tests checks SQLite and PostgreSQL alike,
as River's driver test suite (riverdrivertest) checks its drivers, instead of engine behaviour
being spread over the feature tests. A test that only makes sense where the engine has a
capability (``has_listen_notify``, ``vendor``) skips itself elsewhere and says why.

Tests assert what the database holds afterwards (or what another connection sees), never
what a mock was called with. Setting up a starting state with a plain queryset update is fine
(:func:`put`); what is checked goes through the engine.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs import features, signals
from django_jobs.pro import FEATURES
from django_jobs.engines import get_engine, wakeup
from django_jobs.engines.base import Engine
from django_jobs.models import (FINISHED_AT, FINISHED_STATES, STATE_BITS, Job, JobChange, JobState,
                                Peer, error_entry)
from django_jobs.outcome import Outcome
from django_jobs.transitions import WRITE_CHUNK, ack, transition

from .helpers import count_statements, reload
from .waits import TIMEOUT, in_thread, join_all, race, wait_event
from .workers import NoopWorker

#: The queue most tests put their jobs in.
QUEUE = "contract"
#: ``attempted_by`` of the fetches made here: [node, producer id].
BY = ["contract-node", "producer-1"]
#: Every column of a job (the generated ``unique_slot`` included), for whole-row comparisons.
COLUMNS = [f.attname for f in Job._meta.concrete_fields]
#: The finished-timestamp columns.
FINISHED_COLUMNS = tuple(FINISHED_AT.values())
#: Final and non-final states.
FINAL = tuple(FINISHED_AT)
NOT_FINAL = tuple(s for s in JobState.values if s not in FINISHED_AT)


# -- building, setting up and reading jobs ------------------------------------------------------


def ago(seconds: float, now=None) -> datetime.datetime:
    return (now or timezone.now()) - datetime.timedelta(seconds=seconds)


def later(seconds: float, now=None) -> datetime.datetime:
    return (now or timezone.now()) + datetime.timedelta(seconds=seconds)


def build(count: int = 1, queue: str = QUEUE, *, start: int = 0, **options) -> list[Job]:
    """``count`` unsaved jobs of NoopWorker in ``queue``, args ``{"n": start + i}``."""
    return [NoopWorker.new({"n": start + i}, queue=queue, **options) for i in range(count)]


def enqueue(count: int = 1, queue: str = QUEUE, **options) -> list[Job]:
    """``count`` jobs inserted (set-up: ``insert_all``)."""
    return django_jobs.insert_all(build(count, queue, **options))


def put(jobs, state: str, **fields) -> list[Job]:
    """Set-up: put ``jobs`` in ``state`` with ``fields`` by a plain queryset update (a starting
    point, not what the test checks); return them fresh from the database."""
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(state=state, **fields)
    return fresh(jobs)


def fresh(jobs) -> list[Job]:
    """``jobs`` read back, in order (fails on a job that is gone)."""
    rows = Job.objects.in_bulk([job.pk for job in jobs])
    return [rows[job.pk] for job in jobs]


def states(jobs) -> list[str | None]:
    """The state of each of ``jobs`` (None for a deleted one)."""
    found = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "state"))
    return [found.get(job.pk) for job in jobs]


def row_values(job) -> dict:
    return {name: getattr(job, name) for name in COLUMNS}


def claim(count: int = 1, queue: str = QUEUE, **options) -> list[Job]:
    """``count`` jobs inserted and fetched: executing, attempt 1, as a producer holds them
    (``queue`` must have no other available job)."""
    jobs = enqueue(count, queue, **options)
    claimed = {job.pk: job for job in get_engine().fetch_jobs(queue, count, BY,
                                                               timezone.now())}
    assert claimed.keys() == {job.pk for job in jobs}, "set-up: the fetch missed jobs"
    return [claimed[job.pk] for job in jobs]


def kinds(statements: list[str]) -> list[str]:
    """The kind of each statement (``UPDATE``, ``SELECT``, ...), savepoints left out: the
    first word of PostgreSQL's command tags and of SQLite's SQL alike."""
    words = [s.split()[0].upper() for s in statements if s.strip()]
    return [w for w in words if w not in ("SAVEPOINT", "RELEASE")]


def read_elsewhere(pk: int) -> str | None:
    """The state of job ``pk`` as another connection sees it (one of its own, in a thread)."""
    seen = {}

    def read():
        seen["state"] = Job.objects.filter(pk=pk).values_list("state", flat=True).first()

    join_all([in_thread(read, name="other-connection")], what="a read on another connection")
    return seen["state"]


# -- the state_changed signal -------------------------------------------------------------------


def receive_changes(test, action=None, *, attempts=False) -> list[SimpleNamespace]:
    """Connect a ``state_changed`` receiver for the rest of ``test``; return the list of the
    signals it got (``sender``, ``changes``, ``using``, and whether the connection was inside
    a transaction). ``action(changes)`` runs inside the receiver. The changes' ``attempt`` is
    kept only with ``attempts`` (AttemptReportTests checks it)."""
    calls = []

    def receiver(sender, changes, using, **kwargs):
        kept = list(changes) if attempts else [replace(c, attempt=None, old_attempt=None)
                                               for c in changes]
        calls.append(SimpleNamespace(sender=sender, changes=kept, using=using,
                                     atomic=connections[using].in_atomic_block))
        if action is not None:
            action(changes)

    signals.state_changed.connect(receiver, weak=False)
    test.addCleanup(signals.state_changed.disconnect, receiver)
    return calls


@contextmanager
def no_receivers():
    """Nobody watching state changes for the block: ``state_changed`` receivers a project
    connected, and job features implementing ``acked`` (the built-in chains), are set aside.
    The door's fast paths then read nothing back."""
    signal = signals.state_changed
    watching = [f for f in features.registered_features()
                if type(f).acked is not features.Feature.acked]
    with signal.lock:
        saved, signal.receivers = signal.receivers, []
        signal.sender_receivers_cache.clear()
    for feature in watching:
        features.unregister_feature(feature)
    try:
        yield
    finally:
        with signal.lock:
            signal.receivers = saved
            signal.sender_receivers_cache.clear()
        everything = [*features.registered_features()]
        for feature in everything:
            features.unregister_feature(feature)
        for feature in sorted([*everything, *watching], key=_registration_order):
            features.register_feature(feature)


def _registration_order(feature) -> int:
    """Where a feature stood among the built-in ones (others after them)."""
    builtin = [type(f) for f in FEATURES]
    return builtin.index(type(feature)) if type(feature) in builtin else len(builtin)


class Refused(Exception):
    """Raised by a receiver that refuses a change."""


# -- hearing notifications ----------------------------------------------------------------------


class Listener:
    """A connection of its own LISTENing on ``channel`` (engines with LISTEN/NOTIFY), as a
    node's notifier does."""

    def __init__(self, channel: str, alias: str = DEFAULT_DB_ALIAS) -> None:
        wrapper = connections[alias]
        self.channel = channel
        self.conn = wrapper.get_new_connection(wrapper.get_connection_params())
        self.conn.autocommit = True
        self.conn.execute(f"LISTEN {channel}")

    def heard(self) -> list[str]:
        """The payloads delivered since the last call, in order.

        The listener sends a notification of its own and reads up to it: the server delivers
        notifications in commit order, so everything committed before has arrived by then
        (no sleep, no guessing how long a notification takes)."""
        marker = f"marker-{uuid.uuid4().hex}"
        self.conn.execute("SELECT pg_notify(%s, %s)", [self.channel, marker])
        payloads = []
        for notify in self.conn.notifies(timeout=TIMEOUT):
            if notify.payload == marker:
                return payloads
            payloads.append(notify.payload)
        raise AssertionError(f"timed out after {TIMEOUT:g} s waiting for the listener's own "
                             f"notification on {self.channel}; heard {payloads}")

    def close(self) -> None:
        self.conn.close()


class Producers:
    """What producers of ``queues`` hear about new jobs: on another connection (LISTEN) where
    the engine has LISTEN/NOTIFY, else through this process's wake-up registry
    (:mod:`django_jobs.engines.wakeup`), where the producers running here register."""

    def __init__(self, test, engine: Engine, queues) -> None:
        self.listener = None
        self.woken: list[str] = []
        if engine.has_listen_notify:
            from django_jobs.engines.postgresql import INSERT_CHANNEL

            self.listener = Listener(INSERT_CHANNEL, engine.alias)
            test.addCleanup(self.listener.close)
        else:
            for queue in queues:
                wake = partial(self.woken.append, queue)
                wakeup.register(queue, wake)
                test.addCleanup(wakeup.unregister, queue, wake)

    def heard(self) -> list[str]:
        """The queues woken since the last call, sorted."""
        if self.listener is not None:
            return sorted(self.listener.heard())
        heard, self.woken[:] = sorted(self.woken), []
        return heard


def skip_unless_listen_notify(test):
    if not test.engine.has_listen_notify:
        test.skipTest(f"{test.engine.vendor}: no LISTEN/NOTIFY (has_listen_notify is False)")


def skip_if_listen_notify(test):
    if test.engine.has_listen_notify:
        test.skipTest(f"{test.engine.vendor}: has LISTEN/NOTIFY (has_listen_notify is True)")


#: The engine of this run, for marking a known bug of one engine.


class EngineMixin:
    def setUp(self):
        super().setUp()
        self.engine = get_engine()


# == capabilities ================================================================================


class CapabilityTests(EngineMixin, TestCase):
    def test_the_engine_serves_its_database(self):
        self.assertIsInstance(self.engine, Engine)
        self.assertIs(get_engine(self.engine.alias), self.engine)
        self.assertEqual(self.engine.alias, DEFAULT_DB_ALIAS)
        self.assertEqual(self.engine.vendor, connections[self.engine.alias].vendor)
        self.assertIsInstance(self.engine.has_listen_notify, bool)
        self.assertIsInstance(self.engine.max_query_params, int)
        # At least one whole row fits in a statement.
        self.assertGreaterEqual(self.engine.max_query_params, len(self.engine.insert_fields))

    def test_engine_is_abstract(self):
        with self.assertRaises(TypeError):
            Engine(DEFAULT_DB_ALIAS)

        class NoFetch(Engine):
            vendor = "nothing"

        with self.assertRaises(TypeError):
            NoFetch(DEFAULT_DB_ALIAS)

        class WithFetch(NoFetch):
            def fetch_statement(self, queue, limit, now, attempted_by, ids=None):
                return "SELECT 1", []

        with self.assertRaises(TypeError):  # serialize() is the other thing to provide
            WithFetch(DEFAULT_DB_ALIAS)

        class Complete(WithFetch):
            def serialize(self, keys):
                return None

        engine = Complete(DEFAULT_DB_ALIAS)
        # The capabilities default to the least an engine can do.
        self.assertFalse(engine.has_listen_notify)
        self.assertIsNone(engine.announce({"action": "pause"}))

    def test_without_listen_notify_notify_sends_nothing_to_the_database(self):
        # So nothing of it can reach another connection (the LISTEN side is
        # NotifyTests.test_notify_is_heard_by_another_connection_at_commit).
        skip_if_listen_notify(self)
        with count_statements() as statements:
            self.engine.notify(["a", "b"])
        self.assertEqual(statements, [])


# == insert_jobs ===============================================================================


class InsertTests(EngineMixin, TestCase):
    def assertRowsAre(self, jobs):
        """Each job's row holds what the job held (ids matched to the right jobs)."""
        rows = Job.objects.in_bulk([job.pk for job in jobs])
        self.assertEqual(len(rows), len(jobs))
        for job in jobs:
            row = rows[job.pk]
            for field in self.engine.insert_fields:
                self.assertEqual(getattr(row, field.attname), getattr(job, field.attname),
                                 f"job {job.pk}: {field.attname}")

    def test_one_job(self):
        [job] = build(meta={"m": 1}, tags=["t"], priority=3)
        self.engine.insert_jobs([job])
        self.assertIsNotNone(job.pk)
        self.assertFalse(job._state.adding)
        self.assertEqual(job._state.db, self.engine.alias)
        self.assertRowsAre([job])
        row = reload(job)
        self.assertEqual((row.state, row.attempt, row.errors), ("available", 0, []))
        self.assertIsNone(row.attempted_by)

    def test_nothing_to_insert(self):
        with count_statements() as statements:
            self.engine.insert_jobs([])
            self.engine.insert_jobs([], skip_conflicts=True)
        self.assertEqual(statements, [])

    def test_many_jobs_past_one_statement(self):
        per_statement = self.engine.max_query_params // len(self.engine.insert_fields)
        jobs = build(per_statement + 2)
        jobs[1].state, jobs[1].scheduled_at = "scheduled", later(60)
        self.engine.insert_jobs(jobs)
        ids = [job.pk for job in jobs]
        self.assertNotIn(None, ids)
        self.assertEqual(ids, sorted(ids), "ids are not in insertion order")
        self.assertEqual(len(set(ids)), len(ids))
        self.assertTrue(all(not job._state.adding for job in jobs))
        self.assertEqual(Job.objects.count(), len(jobs))
        # Each id is its own job's row (spot checks plus both ends of every chunk).
        self.assertRowsAre([jobs[i] for i in {0, 1, 2, per_statement - 1, per_statement,
                                              per_statement + 1}])
        self.assertEqual(dict(Job.objects.values_list("pk", "args__n")),
                         {job.pk: job.args["n"] for job in jobs})

    def test_skip_conflicts_skips_taken_slots(self):
        [holder] = build(unique={"period": "infinity"}, start=100)
        self.engine.insert_jobs([holder], skip_conflicts=True)
        self.assertIsNotNone(holder.pk)
        [dup_of_holder] = build(unique={"period": "infinity"}, start=100)
        first, second = build(2, unique={"period": "infinity"})
        [dup_of_first] = build(unique={"period": "infinity"})
        plain = build(start=7)[0]
        batch = [dup_of_holder, first, dup_of_first, plain, second]
        self.engine.insert_jobs(batch, skip_conflicts=True)
        self.assertIsNone(dup_of_holder.pk)
        self.assertIsNone(dup_of_first.pk)
        self.assertTrue(dup_of_first._state.adding)
        self.assertEqual(len({first.pk, second.pk, plain.pk} - {None}), 3)
        self.assertRowsAre([holder, first, second, plain])
        self.assertEqual(Job.objects.count(), 4)
        self.assertEqual(reload(first).unique_slot, first.unique_key)

    def test_skip_conflicts_past_one_statement(self):
        per_statement = self.engine.max_query_params // len(self.engine.insert_fields)
        [holder] = build(unique={"period": "infinity"}, start=5)
        self.engine.insert_jobs([holder])
        jobs = build(per_statement + 2, unique={"period": "infinity"})
        self.engine.insert_jobs(jobs, skip_conflicts=True)
        skipped = [job for job in jobs if job.pk is None]
        self.assertEqual([job.args for job in skipped], [{"n": 5}])
        inserted = [job for job in jobs if job.pk is not None]
        self.assertEqual(len(inserted), per_statement + 1)
        self.assertEqual(Job.objects.count(), per_statement + 2)
        self.assertEqual(dict(Job.objects.values_list("pk", "unique_key")),
                         {job.pk: job.unique_key for job in [holder, *inserted]})
        self.assertRowsAre([inserted[0], inserted[per_statement - 1], inserted[-1]])

    def test_a_taken_slot_without_skip_conflicts_is_an_error(self):
        [holder] = build(unique={"period": "infinity"})
        self.engine.insert_jobs([holder])
        with self.assertRaises(IntegrityError), transaction.atomic():
            self.engine.insert_jobs(build(unique={"period": "infinity"}))
        self.assertEqual(Job.objects.count(), 1)


# == fetch_jobs ==================================================================================


class FetchTests(EngineMixin, TestCase):
    def fetch(self, limit=10, queue=QUEUE, now=None, **kwargs):
        return self.engine.fetch_jobs(queue, limit, BY, now or timezone.now(), **kwargs)

    def test_claims_at_most_limit_and_marks_them_executing(self):
        jobs = enqueue(5)
        now = timezone.now()
        claimed = self.fetch(3, now=now)
        self.assertEqual([j.pk for j in claimed], [j.pk for j in jobs[:3]])
        rows = fresh(claimed)
        for job, row in zip(claimed, rows, strict=True):
            self.assertEqual((row.state, row.attempt, row.attempted_at, row.attempted_by),
                             ("executing", 1, now, BY))
            # What the fetch returns is the row as written (jobs_from_rows).
            self.assertEqual(row_values(job), row_values(row))
            self.assertEqual(job._state.db, self.engine.alias)
            self.assertFalse(job._state.adding)
        self.assertEqual(states(jobs[3:]), ["available", "available"])
        self.assertEqual([j.attempt for j in fresh(jobs[3:])], [0, 0])

    def test_bumps_the_attempt(self):
        [job] = put(enqueue(max_attempts=5), "available", attempt=2)
        [claimed] = self.fetch()
        self.assertEqual((claimed.attempt, reload(job).attempt), (3, 3))

    def test_claims_only_available_jobs_of_its_queue(self):
        mine = enqueue(2)
        enqueue(2, queue="other")
        for state in JobState.values:
            if state != "available":
                put(enqueue(1, start=50), state, attempt=1)
        claimed = self.fetch()
        self.assertEqual([j.pk for j in claimed], [j.pk for j in mine])
        self.assertEqual(self.fetch(), [])
        self.assertEqual(Job.objects.filter(queue="other", state="available").count(), 2)
        self.assertEqual(Job.objects.filter(state="executing").count(), 3)

    def test_limit_zero_or_less_claims_nothing(self):
        enqueue(2)
        with count_statements() as statements:
            self.assertEqual(self.fetch(0), [])
            self.assertEqual(self.fetch(-1), [])
        self.assertEqual(statements, [])
        self.assertEqual(Job.objects.filter(state="available").count(), 2)

    def test_orders_by_priority_scheduled_at_id(self):
        now = timezone.now()
        a = NoopWorker.new({"n": "a"}, queue=QUEUE, priority=3, scheduled_at=ago(9, now))
        b = NoopWorker.new({"n": "b"}, queue=QUEUE, priority=0, scheduled_at=ago(1, now))
        c = NoopWorker.new({"n": "c"}, queue=QUEUE, priority=0, scheduled_at=ago(5, now))
        d = NoopWorker.new({"n": "d"}, queue=QUEUE, priority=9, scheduled_at=ago(99, now))
        same = build(3, priority=1)  # one priority, one scheduled_at: by id
        for job in same:
            job.scheduled_at = ago(3, now)
        jobs = [a, b, c, d, *same]
        self.engine.insert_jobs(jobs)
        self.assertEqual([j.pk for j in self.fetch(2, now=now)], [c.pk, b.pk])
        self.assertEqual([j.pk for j in self.fetch(10, now=now)],
                         [*(j.pk for j in same), a.pk, d.pk])

    def test_ids_restrict_the_claim(self):
        jobs = enqueue(6)
        done = put(jobs[5:], "completed", completed_at=timezone.now())[0]
        claimed = self.fetch(2, ids=[jobs[4].pk, jobs[1].pk, jobs[3].pk, done.pk])
        self.assertEqual([j.pk for j in claimed], [jobs[1].pk, jobs[3].pk])
        self.assertEqual([j.pk for j in self.fetch(ids=[jobs[4].pk, done.pk])], [jobs[4].pk])
        self.assertEqual(self.fetch(ids=[]), [])
        self.assertEqual(states(jobs), ["available", "executing", "available", "executing",
                                        "executing", "completed"])

    def test_releases_the_unique_key_unless_executing_is_a_unique_state(self):
        [releasing] = enqueue(unique={"period": "infinity", "states": ["available",
                                                                        "scheduled"]})
        [keeping] = enqueue(unique={"period": "infinity"}, start=1)  # "successful" states
        self.assertIsNotNone(releasing.unique_key)
        self.assertEqual(releasing.unique_states & STATE_BITS["executing"], 0)
        self.assertNotEqual(keeping.unique_states & STATE_BITS["executing"], 0)
        claimed = {job.pk: job for job in self.fetch()}
        self.assertIsNone(claimed[releasing.pk].unique_key)
        self.assertEqual(claimed[keeping.pk].unique_key, keeping.unique_key)
        row = reload(releasing)
        self.assertEqual((row.unique_key, row.unique_slot), (None, None))
        row = reload(keeping)
        self.assertEqual((row.unique_key, row.unique_slot), (keeping.unique_key,) * 2)


class ConcurrentFetchTests(EngineMixin, TransactionTestCase):
    def test_concurrent_claimers_never_get_the_same_job(self):
        total, claimers = 200, 4
        enqueue(total)
        engine = self.engine

        def claimer(index):
            got = []
            while jobs := engine.fetch_jobs(QUEUE, 7, [f"node-{index}", str(index)],
                                            timezone.now()):
                got.extend(job.pk for job in jobs)
            return got

        claimed = race(claimers, claimer, what="claimers")
        every = [pk for got in claimed for pk in got]
        self.assertEqual(len(every), total)
        self.assertEqual(len(set(every)), total, "a job was claimed twice")
        self.assertEqual(Job.objects.filter(state="executing", attempt=1).count(), total)
        # Each job names the claimer that got it.
        for index, got in enumerate(claimed):
            owners = Job.objects.filter(pk__in=got).values_list("attempted_by", flat=True)
            self.assertEqual(list(owners), [[f"node-{index}", str(index)]] * len(got))

    def test_concurrent_contenders_get_one_leader(self):
        now = timezone.now()
        won = race(4, lambda i: self.engine.acquire_leadership(
            "contract-race", f"node-{i}", now, later(30, now)), what="contenders")
        winners = [f"node-{i}" for i, leads in enumerate(won) if leads]
        self.assertEqual(len(winners), 1, won)
        self.assertEqual(Peer.objects.get(name="contract-race").node, winners[0])


class SerializeTests(EngineMixin, TransactionTestCase):
    def test_a_second_transaction_on_the_same_key_waits_for_the_first_to_end(self):
        engine = self.engine
        held, order = threading.Event(), []

        def first():
            try:
                with transaction.atomic():
                    engine.serialize(["chain:a"])
                    order.append("first has it")
                    held.set()
                    time.sleep(0.3)  # the other one must wait out this
                    order.append("first ends")
            finally:
                connections.close_all()

        def second():
            try:
                wait_event(held, what="the first transaction to take the key")
                with transaction.atomic():
                    engine.serialize(["chain:b", "chain:a"])
                    order.append("second has it")
            finally:
                connections.close_all()

        threads = [threading.Thread(target=f, daemon=True) for f in (first, second)]
        for thread in threads:
            thread.start()
        join_all(threads, what="the two transactions")
        self.assertEqual(order, ["first has it", "first ends", "second has it"])

    def test_no_keys_takes_nothing(self):
        with count_statements() as statements, transaction.atomic():
            self.engine.serialize([])
        self.assertFalse([s for s in statements if "lock" in s.lower() or "UPDATE" in s])


# == transition: the door ======================================================================


class TransitionTests(EngineMixin, TestCase):
    def test_only_from_filters_and_returns_the_count(self):
        available = enqueue(3)
        [scheduled] = put(enqueue(start=10), "scheduled", scheduled_at=later(60))
        [completed] = put(enqueue(start=20), "completed", completed_at=ago(5))
        everything = [*available, scheduled, completed]
        count = transition([j.pk for j in everything], "cancelled",
                                       only_from=["available", "scheduled"])
        self.assertEqual(count, 4)
        self.assertEqual(states(everything), ["cancelled"] * 4 + ["completed"])
        self.assertEqual(reload(completed).completed_at, completed.completed_at)
        # Nothing left to change: writing it again changes nothing.
        self.assertEqual(transition([j.pk for j in everything], "cancelled",
                                                only_from=["available", "scheduled"]), 0)

    def test_queryset_target(self):
        mine = enqueue(2)
        [other] = enqueue(queue="other")
        count = transition(Job.objects.filter(queue=QUEUE), "suspended",
                                       only_from=["available"])
        self.assertEqual(count, 2)
        self.assertEqual(states([*mine, other]), ["suspended", "suspended", "available"])

    def test_values_plain_and_expressions(self):
        jobs = put(enqueue(2, max_attempts=3), "discarded", attempt=3, discarded_at=ago(5))
        [low] = put(enqueue(max_attempts=3, start=5), "discarded", attempt=1,
                    discarded_at=ago(5))
        at = later(10)
        entry = error_entry(3, at, "an error")
        count = transition([*(j.pk for j in jobs), low.pk], "available",
                                       only_from=["discarded"], values={
                                           "scheduled_at": at, "errors": [entry],
                                           "max_attempts": Greatest(F("max_attempts"),
                                                                    F("attempt") + 1),
                                           "priority": F("priority") + Value(2)})
        self.assertEqual(count, 3)
        for row in fresh(jobs):
            self.assertEqual((row.state, row.scheduled_at, row.errors, row.max_attempts,
                              row.priority), ("available", at, [entry], 4, 2))
        self.assertEqual(reload(low).max_attempts, 3)

    def test_each_sets_values_per_job(self):
        jobs = claim(3)
        at = timezone.now()
        each = {job.pk: {"errors": [error_entry(1, at, f"error {i}")],
                         "scheduled_at": later(i + 1, at)} for i, job in enumerate(jobs)}
        count = transition(None, "retryable", only_from=["executing"], each=each)
        self.assertEqual(count, 3)
        for i, row in enumerate(fresh(jobs)):
            self.assertEqual(row.state, "retryable")
            self.assertEqual(row.errors, each[row.pk]["errors"])
            self.assertEqual(row.scheduled_at, later(i + 1, at))

    def test_each_with_shared_plain_values(self):
        jobs = claim(2)
        at = timezone.now()
        count = transition(
            None, "available", only_from=["executing"],
            values={"scheduled_at": at, "attempt": 0, "priority": 4},
            each={job.pk: {"errors": [error_entry(1, at, f"back {job.pk}")]} for job in jobs})
        self.assertEqual(count, 2)
        for row in fresh(jobs):
            self.assertEqual((row.state, row.scheduled_at, row.attempt, row.priority),
                             ("available", at, 0, 4))
            self.assertEqual(row.errors[0]["error"], f"back {row.pk}")

    def test_each_with_shared_json_values(self):
        jobs = put(claim(2), "executing", errors=[error_entry(1, ago(5), "old")])
        at = timezone.now()
        count = transition(
            None, "retryable", only_from=["executing"],
            values={"errors": [], "meta": {"shared": True}},
            each={job.pk: {"scheduled_at": later(i, at)} for i, job in enumerate(jobs)})
        self.assertEqual(count, 2)
        for i, row in enumerate(fresh(jobs)):
            self.assertEqual((row.state, row.errors, row.meta, row.scheduled_at),
                             ("retryable", [], {"shared": True}, later(i, at)))

    def test_each_leaves_jobs_outside_only_from(self):
        jobs = claim(3)
        [cancelled] = put(jobs[1:2], "cancelled", cancelled_at=ago(1))
        each = {job.pk: {"errors": [error_entry(1, timezone.now(), "x")]} for job in jobs}
        self.assertEqual(transition(None, "retryable", only_from=["executing"],
                                                each=each), 2)
        self.assertEqual(states(jobs), ["retryable", "cancelled", "retryable"])
        self.assertEqual(reload(cancelled).errors, [])
        self.assertEqual(transition(None, "retryable", only_from=["executing"],
                                                each={}), 0)

    def test_each_is_one_statement_per_write_chunk(self):
        jobs = claim(WRITE_CHUNK + 1)
        each = {job.pk: {"meta": {"i": i}} for i, job in enumerate(jobs)}
        with no_receivers(), count_statements() as statements:
            count = transition(None, "completed", only_from=["executing"],
                                           each=each)
        self.assertEqual(count, WRITE_CHUNK + 1)
        self.assertEqual(kinds(statements), ["UPDATE", "UPDATE"])
        self.assertEqual(dict(Job.objects.filter(state="completed").values_list("pk", "meta")),
                         {pk: values["meta"] for pk, values in each.items()})

    def test_state_none_deletes(self):
        jobs = put(enqueue(3), "completed", completed_at=ago(5))
        [running] = claim()
        count = transition([*(j.pk for j in jobs), running.pk], None,
                                       only_from=FINAL)
        self.assertEqual(count, 3)
        self.assertEqual(states([*jobs, running]), [None, None, None, "executing"])
        self.assertEqual(transition(Job.objects.all(), None, only_from=FINAL), 0)

    def test_unique_key_kept_only_while_the_new_state_is_a_unique_state(self):
        unique = {"period": "infinity", "states": ["available", "scheduled", "executing",
                                                   "completed"]}
        for n, state in enumerate(JobState.values):
            with self.subTest(state=state):
                [job] = enqueue(unique=unique, start=n)
                self.assertIsNotNone(job.unique_key)
                transition([job.pk], state, only_from=["available"])
                row = reload(job)
                self.assertEqual(row.state, state)
                kept = job.unique_key if job.unique_states & STATE_BITS[state] else None
                self.assertEqual((row.unique_key, row.unique_slot), (kept, kept))
        # A job that gave up its key never gets it back (it cannot collide with a new holder).
        [job] = enqueue(unique=unique, start=100)
        transition([job.pk], "cancelled", only_from=["available"])
        transition([job.pk], "available", only_from=["cancelled"])
        self.assertEqual((reload(job).state, reload(job).unique_key), ("available", None))
        # Through each too.
        [job] = claim(queue="each", unique={"period": "infinity",
                                            "states": ["available", "executing"]})
        transition(None, "completed", only_from=["executing"],
                               each={job.pk: {"meta": {}}})
        self.assertIsNone(reload(job).unique_key)

    def test_final_state_sets_its_timestamp_and_clears_the_others(self):
        stamped = {column: ago(100) for column in FINISHED_COLUMNS}
        for state in FINAL:
            for given in (None, ago(30)):
                with self.subTest(state=state, given=given):
                    [job] = put(enqueue(), "suspended", **stamped)
                    values = {FINISHED_AT[state]: given} if given else {}
                    before = timezone.now()
                    transition([job.pk], state, only_from=["suspended"],
                                           values=values)
                    after = timezone.now()
                    row = reload(job)
                    for column in FINISHED_COLUMNS:
                        if column != FINISHED_AT[state]:
                            self.assertIsNone(getattr(row, column), column)
                    if given:
                        self.assertEqual(getattr(row, FINISHED_AT[state]), given)
                    else:
                        self.assertTrue(before <= getattr(row, FINISHED_AT[state]) <= after)
                    self.assertEqual(row.finished_at, getattr(row, FINISHED_AT[state]))

    def test_non_final_state_clears_every_finished_timestamp(self):
        stamped = {column: ago(100) for column in FINISHED_COLUMNS}
        for state in NOT_FINAL:
            with self.subTest(state=state):
                [job] = put(enqueue(), "completed", **stamped)
                transition([job.pk], state, only_from=["completed"])
                row = reload(job)
                self.assertEqual(row.state, state)
                self.assertEqual([getattr(row, c) for c in FINISHED_COLUMNS], [None] * 3)
                self.assertIsNone(row.finished_at)

    def test_finished_timestamps_through_each(self):
        jobs = claim(2)
        at = ago(3)
        transition(None, "discarded", only_from=["executing"],
                               each={job.pk: {"discarded_at": at} for job in jobs})
        for row in fresh(jobs):
            self.assertEqual((row.state, row.discarded_at, row.completed_at, row.cancelled_at),
                             ("discarded", at, None, None))


class TransitionSignalTests(EngineMixin, TestCase):
    def change(self, job, old, new, meta=None) -> JobChange:
        return JobChange(job.pk, job.worker, job.queue, job.meta if meta is None else meta,
                         old, new)

    def test_without_receivers_nothing_is_read_back(self):
        jobs = enqueue(3)
        with no_receivers():
            self.assertFalse(signals.state_changed.has_listeners())
            with count_statements() as statements:
                count = transition(Job.objects.filter(queue=QUEUE), "cancelled",
                                               only_from=["available"])
        self.assertEqual(count, 3)
        self.assertEqual(kinds(statements), ["UPDATE"])
        self.assertEqual(states(jobs), ["cancelled"] * 3)

    def test_queryset_target_sends_one_signal_with_the_changes(self):
        jobs = enqueue(2, meta={"m": 1})
        [scheduled] = put(enqueue(start=5), "scheduled", scheduled_at=later(60))
        put(enqueue(start=9), "completed", completed_at=ago(1))
        calls = receive_changes(self)
        count = transition(Job.objects.filter(queue=QUEUE), "cancelled",
                                       only_from=["available", "scheduled"])
        self.assertEqual(count, 3)
        self.assertEqual(len(calls), 1)
        self.assertIs(calls[0].sender, Job)
        self.assertEqual(calls[0].using, self.engine.alias)
        self.assertTrue(calls[0].atomic)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id), [
            self.change(jobs[0], "available", "cancelled"),
            self.change(jobs[1], "available", "cancelled"),
            self.change(scheduled, "scheduled", "cancelled")])

    def test_id_target_reports_the_meta_after_the_change(self):
        jobs = enqueue(2, meta={"m": 1})
        calls = receive_changes(self)
        transition([j.pk for j in jobs], "suspended", only_from=["available"],
                               values={"meta": {"m": 2}})
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id),
                         [self.change(job, "available", "suspended", {"m": 2}) for job in jobs])
        self.assertEqual([row.meta for row in fresh(jobs)], [{"m": 2}] * 2)

    def test_nothing_changed_no_signal(self):
        [job] = put(enqueue(), "completed", completed_at=ago(1))
        calls = receive_changes(self)
        self.assertEqual(transition([job.pk], "cancelled",
                                                only_from=["available"]), 0)
        self.assertEqual(transition(None, "cancelled", only_from=["available"],
                                                each={job.pk: {"meta": {}}}), 0)
        self.assertEqual(transition(None, "cancelled", only_from=["available"],
                                                each={job.pk: {"meta": {}}},
                                                known={job.pk: job}), 0)
        self.assertEqual(transition([job.pk], None, only_from=["available"]), 0)
        self.assertEqual(calls, [])
        self.assertEqual(reload(job).state, "completed")

    def test_delete_reports_new_state_none(self):
        jobs = put(enqueue(2), "completed", completed_at=ago(1))
        [running] = claim()
        calls = receive_changes(self)
        count = transition([*(j.pk for j in jobs), running.pk], None,
                                       only_from=FINAL)
        self.assertEqual(count, 2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id),
                         [self.change(job, "completed", None) for job in jobs])
        self.assertEqual(states([*jobs, running]), [None, None, "executing"])

    def test_each_without_known_reads_the_jobs(self):
        jobs = claim(3, meta={"m": 0})
        [cancelled] = put(jobs[2:], "cancelled", cancelled_at=ago(1))
        calls = receive_changes(self)
        each = {job.pk: {"meta": {"m": i}} for i, job in enumerate(jobs)}
        count = transition(None, "completed", only_from=["executing"], each=each)
        self.assertEqual(count, 2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id), [
            self.change(jobs[0], "executing", "completed", {"m": 0}),
            self.change(jobs[1], "executing", "completed", {"m": 1})])
        self.assertEqual(states(jobs), ["completed", "completed", "cancelled"])
        self.assertEqual(reload(cancelled).meta, {"m": 0})

    def test_each_with_known_reports_only_the_jobs_that_changed(self):
        jobs = claim(3, meta={"m": 0})
        put(jobs[1:2], "cancelled", cancelled_at=ago(1))
        calls = receive_changes(self)
        at = timezone.now()
        each = {job.pk: {"errors": [error_entry(1, at, "x")]} for job in jobs}
        count = transition(None, "retryable", only_from=["executing"], each=each,
                                       known={job.pk: job for job in jobs})
        self.assertEqual(count, 2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id), [
            self.change(jobs[0], "executing", "retryable"),
            self.change(jobs[2], "executing", "retryable")])
        self.assertEqual(states(jobs), ["retryable", "cancelled", "retryable"])

    def test_one_signal_per_call_whatever_the_chunks(self):
        jobs = claim(WRITE_CHUNK + 2)
        calls = receive_changes(self)
        transition(None, "completed", only_from=["executing"],
                               each={job.pk: {"meta": {}} for job in jobs},
                               known={job.pk: job for job in jobs})
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(c.id for c in calls[0].changes), sorted(j.pk for j in jobs))

    def test_receiver_sees_the_change_written(self):
        jobs = enqueue(2)
        seen = []
        receive_changes(self, lambda changes: seen.extend(states(jobs)))
        transition([j.pk for j in jobs], "cancelled", only_from=["available"])
        self.assertEqual(seen, ["cancelled", "cancelled"])


class TransitionAtomicityTests(EngineMixin, TransactionTestCase):
    """The signal is sent inside the transaction that writes the change."""

    def release(self, changes):
        """What a receiver such as a chain does: insert a job for each change."""
        for change in changes:
            NoopWorker.enqueue({"after": change.id}, queue="released")

    def released(self) -> list:
        return sorted(Job.objects.filter(queue="released").values_list("args__after",
                                                                       flat=True))

    def test_receiver_writes_commit_with_the_change(self):
        jobs = enqueue(2)
        elsewhere = []

        def receiver(changes):
            self.release(changes)
            elsewhere.append(read_elsewhere(jobs[0].pk))

        calls = receive_changes(self, receiver)
        transition(Job.objects.filter(queue=QUEUE), "cancelled",
                               only_from=["available"])
        self.assertTrue(calls[0].atomic)
        # Inside the receiver the change was not committed yet: another connection saw the
        # old state. Afterwards both the change and the receiver's rows are there.
        self.assertEqual(elsewhere, ["available"])
        self.assertEqual(read_elsewhere(jobs[0].pk), "cancelled")
        self.assertEqual(self.released(), sorted(j.pk for j in jobs))

    def test_receiver_that_raises_rolls_back_the_change(self):
        jobs = enqueue(2)

        def refuse(changes):
            self.release(changes)
            raise Refused("no")

        receive_changes(self, refuse)
        with self.assertRaises(Refused):
            transition([j.pk for j in jobs], "cancelled", only_from=["available"])
        with self.assertRaises(Refused):
            transition(Job.objects.filter(queue=QUEUE), None,
                                   only_from=["available"])
        self.assertEqual(states(jobs), ["available", "available"])
        self.assertEqual(self.released(), [])

    def test_receiver_that_raises_rolls_back_each_and_ack(self):
        jobs = claim(2)

        def refuse(changes):
            self.release(changes)
            raise Refused("no")

        receive_changes(self, refuse)
        at = timezone.now()
        with self.assertRaises(Refused):
            transition(None, "completed", only_from=["executing"],
                                   each={job.pk: {"meta": {"x": 1}} for job in jobs},
                                   known={job.pk: job for job in jobs})
        with self.assertRaises(Refused):
            transition(None, "completed", only_from=["executing"],
                                   each={job.pk: {"meta": {"x": 1}} for job in jobs})
        with self.assertRaises(Refused):
            ack([Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
                             Outcome(jobs[1].pk, "discarded", at, {"errors": []}, jobs[1])])
        self.assertEqual(states(jobs), ["executing", "executing"])
        self.assertEqual([row.meta for row in fresh(jobs)], [{}, {}])
        self.assertEqual(self.released(), [])


# == ack =========================================================================================


class AckTests(EngineMixin, TestCase):
    def test_completed_in_bulk_with_and_without_meta(self):
        jobs = claim(4, unique={"period": "infinity"})
        at = timezone.now()
        ack([Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
                         Outcome(jobs[1].pk, "completed", at, {"meta": {"r": 1}}, jobs[1]),
                         Outcome(jobs[2].pk, "completed", at),
                         Outcome(jobs[3].pk, "completed", at, {"meta": {"r": 3}})])
        rows = fresh(jobs)
        for row in rows:
            self.assertEqual((row.state, row.completed_at, row.cancelled_at, row.discarded_at),
                             ("completed", at, None, None))
            self.assertEqual(row.attempt, 1)
            self.assertIsNotNone(row.unique_key)  # completed is one of its unique states
        self.assertEqual([row.meta for row in rows], [{}, {"r": 1}, {}, {"r": 3}])

    def test_failures_snoozes_cancels_discards_and_put_backs(self):
        jobs = claim(6, max_attempts=3, meta={"m": 1})
        at = ago(2)
        retry_at, snooze_at = later(30, at), later(60, at)
        entries = [[error_entry(1, at, f"error {i}")] for i in range(6)]
        ack([
            Outcome(jobs[0].pk, "retryable", at, {"scheduled_at": retry_at,
                                                  "errors": entries[0]}, jobs[0]),
            Outcome(jobs[1].pk, "scheduled", at, {"scheduled_at": snooze_at, "max_attempts": 4,
                                                  "meta": {"m": 1, "snoozed": 1}}, jobs[1]),
            Outcome(jobs[2].pk, "cancelled", at, {"errors": entries[2]}, jobs[2]),
            Outcome(jobs[3].pk, "discarded", at, {"errors": entries[3]}, jobs[3]),
            Outcome(jobs[4].pk, "available", at, {"attempt": 0, "errors": entries[4]}, jobs[4]),
            Outcome(jobs[5].pk, "completed", at, job=jobs[5]),
        ])
        retryable, snoozed, cancelled, discarded, put_back, completed = fresh(jobs)
        self.assertEqual((retryable.state, retryable.scheduled_at, retryable.errors,
                          retryable.attempt), ("retryable", retry_at, entries[0], 1))
        self.assertEqual((snoozed.state, snoozed.scheduled_at, snoozed.max_attempts,
                          snoozed.meta), ("scheduled", snooze_at, 4, {"m": 1, "snoozed": 1}))
        self.assertEqual((cancelled.state, cancelled.cancelled_at, cancelled.errors),
                         ("cancelled", at, entries[2]))
        self.assertEqual((discarded.state, discarded.discarded_at, discarded.errors),
                         ("discarded", at, entries[3]))
        self.assertEqual((put_back.state, put_back.attempt, put_back.errors),
                         ("available", 0, entries[4]))
        self.assertEqual((completed.state, completed.completed_at), ("completed", at))
        for row in (retryable, snoozed, put_back):
            self.assertIsNone(row.finished_at)
        for row in (cancelled, discarded, completed):
            self.assertEqual([c for c in FINISHED_COLUMNS if getattr(row, c)],
                             [FINISHED_AT[row.state]])

    def test_an_outcome_that_changes_only_the_state(self):
        jobs = claim(2)
        at = timezone.now()
        ack([Outcome(jobs[0].pk, "retryable", at, job=jobs[0]),
                         Outcome(jobs[1].pk, "retryable", at, job=jobs[1])])
        self.assertEqual(states(jobs), ["retryable", "retryable"])

    def test_a_job_no_longer_executing_is_untouched(self):
        jobs = claim(2)
        transition([jobs[0].pk], "cancelled", only_from=["executing"])
        cancelled_at = reload(jobs[0]).cancelled_at
        at = timezone.now()
        ack([Outcome(job.pk, "completed", at, {"meta": {"done": 1}}, job)
                         for job in jobs])
        cancelled, completed = fresh(jobs)
        self.assertEqual((cancelled.state, cancelled.cancelled_at, cancelled.completed_at,
                          cancelled.meta), ("cancelled", cancelled_at, None, {}))
        self.assertEqual((completed.state, completed.meta), ("completed", {"done": 1}))

    def test_writing_the_same_outcomes_twice_changes_nothing(self):
        jobs = claim(3)
        at = timezone.now()
        outcomes = [Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
                    Outcome(jobs[1].pk, "retryable", at, {"scheduled_at": later(5, at),
                                                          "errors": [error_entry(1, at, "x")]},
                            jobs[1]),
                    Outcome(jobs[2].pk, "discarded", at, {"errors": []}, jobs[2])]
        ack(outcomes)
        first = [row_values(row) for row in fresh(jobs)]
        calls = receive_changes(self)
        ack([Outcome(o.job_id, o.state, later(1, at), o.changes, o.job)
                         for o in outcomes])
        self.assertEqual([row_values(row) for row in fresh(jobs)], first)
        self.assertEqual(calls, [])

    def test_a_batch_of_completed_jobs_is_one_statement(self):
        jobs = claim(50)
        at = timezone.now()
        outcomes = [Outcome(job.pk, "completed", at, job=job) for job in jobs]
        with no_receivers(), count_statements() as statements:
            ack(outcomes)
        self.assertEqual(kinds(statements), ["UPDATE"], statements)
        self.assertEqual(Job.objects.filter(state="completed", completed_at=at).count(), 50)

    def test_signal_reports_each_group(self):
        jobs = claim(3, meta={"m": 0})
        calls = receive_changes(self)
        at = timezone.now()
        ack([Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
                         Outcome(jobs[1].pk, "completed", at, {"meta": {"m": 1}}, jobs[1]),
                         Outcome(jobs[2].pk, "discarded", at, {"errors": []})])
        changes = sorted((c for call in calls for c in call.changes), key=lambda c: c.id)
        # One per group: completions (with or without a meta change) and discards.
        self.assertEqual(len(calls), 2)
        self.assertEqual(changes, [
            JobChange(jobs[0].pk, jobs[0].worker, QUEUE, {"m": 0}, "executing", "completed"),
            JobChange(jobs[1].pk, jobs[1].worker, QUEUE, {"m": 1}, "executing", "completed"),
            JobChange(jobs[2].pk, jobs[2].worker, QUEUE, {"m": 0}, "executing", "discarded")])

    def test_nothing_to_ack(self):
        with count_statements() as statements:
            ack([])
        self.assertEqual(statements, [])


class AttemptReportTests(EngineMixin, TestCase):
    """Each change says the job's attempt number before and after it (what batches count
    attempts by), on every path through the door."""

    def reported(self, calls):
        return {c.id: (c.old_attempt, c.attempt) for call in calls for c in call.changes}

    def test_acks_put_backs_and_deletes_report_the_attempt(self):
        done, back = claim(2)
        calls = receive_changes(self, attempts=True)
        now = timezone.now()
        ack([Outcome(done.pk, "completed", now, job=done),
                         Outcome(back.pk, "available", now, {"attempt": 0, "errors": []},
                                 back)])
        self.assertEqual(self.reported(calls), {done.pk: (1, 1), back.pk: (1, 0)})
        calls.clear()
        transition([done.pk], None, only_from=FINISHED_STATES)
        self.assertEqual(self.reported(calls), {done.pk: (1, 1)})

    def test_a_put_back_of_a_second_attempt(self):
        put(enqueue(max_attempts=5), "available", attempt=1)
        [job] = get_engine().fetch_jobs(QUEUE, 1, BY, timezone.now())
        self.assertEqual(job.attempt, 2)
        calls = receive_changes(self, attempts=True)
        ack([Outcome(job.pk, "available", timezone.now(),
                                 {"attempt": 1, "errors": []}, job)])
        self.assertEqual(self.reported(calls), {job.pk: (2, 1)})

    def test_changes_of_rows_the_caller_does_not_hold(self):
        [job] = put(enqueue(max_attempts=5), "retryable", attempt=3)
        calls = receive_changes(self, attempts=True)
        transition([job.pk], "available", only_from=["retryable"])
        self.assertEqual(self.reported(calls), {job.pk: (3, 3)})
        calls.clear()
        transition([job.pk], "cancelled", only_from=["available"],
                               each={job.pk: {"attempt": 4}})
        self.assertEqual(self.reported(calls), {job.pk: (3, 4)})


# == leadership ==================================================================================


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


# == notify and announce =========================================================================


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
        from django_jobs.engines.postgresql import INSERT_CHANNEL

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
        from django_jobs.engines.postgresql import CONTROL_CHANNEL

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


# == small services ==============================================================================


class ServiceTests(EngineMixin, TestCase):
    def test_estimate_rows_on_postgresql(self):
        if self.engine.vendor != "postgresql":
            self.skipTest(f"{self.engine.vendor} gives no row estimate")
        enqueue(20)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE django_jobs_job")
        estimate = self.engine.estimate_rows(Job.objects.filter(queue=QUEUE))
        self.assertIsInstance(estimate, int)
        self.assertGreaterEqual(estimate, 0)
        self.assertEqual(self.engine.estimate_rows(Job.objects.none()), 0)

    def test_estimate_rows_none_on_sqlite(self):
        if self.engine.vendor != "sqlite":
            self.skipTest(f"{self.engine.vendor} gives row estimates")
        enqueue(2)
        self.assertIsNone(self.engine.estimate_rows(Job.objects.all()))

    def test_is_busy_false_for_an_unrelated_error(self):
        self.assertFalse(self.engine.is_busy(ValueError("nope")))
        [job] = enqueue()
        try:
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(priority=10)  # breaks a check constraint
        except IntegrityError as exc:
            self.assertFalse(self.engine.is_busy(exc))
        else:
            self.fail("the check constraint on priority did not hold")

    def test_jobs_from_rows(self):
        jobs = build(3, meta={"m": [1]}, tags=["t"])
        jobs[0].priority = 5
        jobs[2].scheduled_at = ago(60)
        self.engine.insert_jobs(jobs)
        put(jobs[1:2], "executing", attempt=1, attempted_by=BY, attempted_at=ago(1))
        columns = [f.column for f in reversed(Job._meta.concrete_fields)]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(columns)} FROM django_jobs_job ORDER BY id DESC")
            names = tuple(column[0] for column in cursor.description)
            rows = cursor.fetchall()
        built = self.engine.jobs_from_rows(names, rows)
        # Ordered by priority, scheduled_at, id; every column as the ORM reads it.
        self.assertEqual([j.pk for j in built], [jobs[2].pk, jobs[1].pk, jobs[0].pk])
        for job, row in zip(built, fresh(built), strict=True):
            self.assertEqual(row_values(job), row_values(row))
            self.assertEqual(job._state.db, self.engine.alias)
        self.assertEqual(self.engine.jobs_from_rows(names, []), [])


class BusyTests(EngineMixin, TransactionTestCase):
    def test_is_busy_true_when_another_connection_holds_the_write_lock(self):
        if self.engine.vendor != "sqlite":
            self.skipTest(f"{self.engine.vendor} writers do not wait on a database lock")
        [job] = enqueue()
        other = connection.copy()
        other.settings_dict = {**other.settings_dict,
                               "OPTIONS": {**other.settings_dict["OPTIONS"], "timeout": 0}}
        self.addCleanup(other.close)
        caught = []
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(priority=1)  # holds the write lock
            try:
                with other.cursor() as cursor:
                    cursor.execute("UPDATE django_jobs_job SET priority = 2")
            except Exception as exc:
                caught.append(exc)
        self.assertEqual(len(caught), 1, "the second writer did not fail")
        self.assertTrue(self.engine.is_busy(caught[0]), repr(caught[0]))
        self.assertEqual(reload(job).priority, 1)
