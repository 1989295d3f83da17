"""The engine's capabilities and small services: what it declares it can do (``vendor``,
``has_listen_notify``, ``max_query_params``), that :class:`~django_jobs.engines.base.Engine` is
abstract, and ``estimate_rows``, ``is_busy``, ``jobs_from_rows``."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.test import TestCase, TransactionTestCase

from ..engines import get_engine
from ..engines.base import Engine
from ..models import Job
from .support import (BY, QUEUE, EngineMixin, ago, build, count_statements, enqueue, fresh, put,
                      reload, row_values, skip_if_listen_notify)

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
