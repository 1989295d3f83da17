"""Recorded results (django_jobs.pro.recorded): what ``perform`` returns, stored with the job.

Values of many types recorded and read back with ``fetch_recorded`` (their types kept); None
and unrecorded workers give ``NotRecorded``; a value over the limit, or one terms cannot
encode, fails the attempt naming why; the value is written in the completion's own statement
(one UPDATE for a whole batch on PostgreSQL); the admin's job page shows it decoded and
escaped. In inline mode, ``perform_job``, ``drain_queue`` and a real ``runjobs`` child.
"""

import base64
import datetime
import decimal
import json
import logging
import random
import uuid
import zlib
from contextlib import contextmanager

from django.contrib.auth.models import User
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.urls import reverse
from django.utils import timezone

from django_jobs import fetch_recorded
from django_jobs.engines import get_engine
from django_jobs.execution.executor import execute
from django_jobs.execution.interrupt import Running
from django_jobs.models import Job
from django_jobs.pro import terms
from django_jobs.pro.recorded import DEFAULT_LIMIT, NotRecorded, ResultTooLarge
from django_jobs.signals import state_changed
from django_jobs.testing import drain_queue, perform_job, with_testing_mode
from django_jobs.transitions import ack

from .helpers import count_statements, describe_jobs, reload
from .pro_workers import (QUEUE, PlainWorker, RecordedToWorker, RecordedWorker,
                          definition_error)
from .processes import RunjobsMixin
from .waits import wait_until

UTC = datetime.UTC

#: Values perform returns, of many types (terms keep them).
VALUES = {
    "str": "done ✓",
    "int": 7,
    "big int": 2 ** 70,
    "float": 2.5,
    "true": True,
    "false": False,
    "list": [1, "a", None],
    "dict": {"sku": "A-1", "qty": 3},
    "int keys": {1: "one", (2, 3): "pair"},
    "tuple": (1, (2, 3)),
    "set": {"x", "y"},
    "frozenset": frozenset({1, 2}),
    "bytes": b"\x00\xfe",
    "decimal": decimal.Decimal("9.90"),
    "datetime": datetime.datetime(2026, 12, 2, 13, 0, tzinfo=UTC),
    "date": datetime.date(2026, 12, 2),
    "time": datetime.time(8, 15),
    "timedelta": datetime.timedelta(hours=36),
    "uuid": uuid.UUID(int=42),
    "nan-free nested": {"rows": [{"price": decimal.Decimal("0.10"), "tags": {"a"},
                                  "at": (datetime.date(2026, 1, 1),)}]},
    "empty string": "",
    "zero": 0,
    "empty list": [],
}

#: Bytes of random data over RecordedWorker's limit of 2,000 bytes once compressed.
TOO_LARGE = 5_000


def value_args(value) -> dict:
    """Args of a RecordedWorker job that returns ``value``."""
    return {"value": terms.encode(value)}


def packed_size_of(value) -> int:
    return terms.packed_size(terms.pack(value))


def assert_same(test, value, back) -> None:
    test.assertEqual(back, value)
    test.assertIs(type(back), type(value))
    if isinstance(value, dict):
        for key, item in value.items():
            assert_same(test, item, back[key])
    elif isinstance(value, (list, tuple)):
        for item, item_back in zip(value, back, strict=True):
            assert_same(test, item, item_back)


def assert_too_large(test, job) -> None:
    """``job`` (RecordedWorker, size TOO_LARGE) failed its attempt naming the size."""
    size = packed_size_of(RecordedWorker().perform(Job(args={"size": TOO_LARGE})))
    test.assertEqual((job.state, job.attempt, len(job.errors)), ("retryable", 1, 1))
    error = job.errors[0]["error"]
    test.assertIn("ResultTooLarge: the result of tests.pro_workers.RecordedWorker is "
                  f"{size:,} bytes after compression, over its recorded limit of 2,000 bytes",
                  error)
    test.assertNotIn("return", job.meta)
    with test.assertRaises(NotRecorded):
        fetch_recorded(job)


def assert_not_encodable(test, job) -> None:
    test.assertEqual(job.state, "retryable")
    test.assertIn("the result of tests.pro_workers.RecordedWorker cannot be recorded: "
                  "value.rows[0]: a object cannot be stored as a term", job.errors[0]["error"])
    test.assertNotIn("return", job.meta)


@contextmanager
def no_state_changed_receivers():
    """Disconnect every ``state_changed`` receiver for the block (then connect them again):
    the ack's single statement is promised when nobody listens."""
    saved = list(state_changed.receivers)
    state_changed.receivers.clear()
    state_changed.sender_receivers_cache.clear()
    try:
        yield
    finally:
        state_changed.receivers[:] = saved
        state_changed.sender_receivers_cache.clear()


class QuietFailures:
    def setUp(self):
        super().setUp()
        logger = logging.getLogger("django_jobs.executor")
        level = logger.level
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, level)


class OptionTests(TestCase):
    def test_bad_options_fail_at_class_definition(self):
        shape = "recorded must be True or a dict of 'limit' (bytes) and 'to' (a meta key)"
        limit = "recorded limit must be a positive whole number of bytes"
        key = "recorded 'to' must be a meta key: a non-empty string"
        cases = [({"limit": 0}, limit), ({"limit": -1}, limit), ({"limit": "1kB"}, limit),
                 ({"limit": True}, limit), ({"size": 10}, shape),
                 ({"limit": 10, "extra": 1}, shape), ("yes", shape), (1, shape),
                 ({"to": ""}, key), ({"to": " price"}, key), ({"to": 1}, key),
                 ({"to": None}, key),
                 ({"to": "recorded"}, "recorded 'to' cannot be 'recorded': django_jobs writes "
                                      "that meta key itself"),
                 ({"to": "batch_id"}, "recorded 'to' cannot be 'batch_id'")]
        for option, expected in cases:
            with self.subTest(option=option):
                message = definition_error("BadRecordedWorker", {"recorded": option})
                self.assertIn("BadRecordedWorker", message)
                self.assertIn(expected, message)

    def test_default_limit(self):
        self.assertEqual(DEFAULT_LIMIT, 32_000)

    def test_fetch_recorded_of_jobs_without_a_result(self):
        pending = RecordedWorker.enqueue({"n": 1})
        with self.assertRaisesMessage(NotRecorded, f"job {pending.pk} "
                                      f"(tests.pro_workers.RecordedWorker) has no recorded "
                                      f"result"):
            fetch_recorded(pending)
        self.assertTrue(issubclass(NotRecorded, LookupError))


class RecordingTests(QuietFailures, TestCase):
    """perform_job, inline mode, drain_queue and the ack, on this run's database."""

    def test_perform_job_returns_the_value(self):
        for name, value in VALUES.items():
            with self.subTest(name):
                assert_same(self, value, perform_job(RecordedWorker, value_args(value)))

    def test_perform_job_raises_when_the_value_is_over_the_limit(self):
        with self.assertRaisesMessage(ResultTooLarge, "over its recorded limit of 2,000 bytes"):
            perform_job(RecordedWorker, {"size": TOO_LARGE})
        with self.assertRaisesMessage(terms.TermError, "cannot be recorded"):
            perform_job(RecordedWorker, {"opaque": True})

    @with_testing_mode("inline")
    def test_inline_mode_records_on_the_returned_job(self):
        for name, value in VALUES.items():
            with self.subTest(name):
                job = RecordedWorker.enqueue(value_args(value))
                self.assertEqual(job.state, "completed", job.errors)
                self.assertIs(job.meta["recorded"], True)
                assert_same(self, value, fetch_recorded(job))
        nothing = RecordedWorker.enqueue({"none": True})
        self.assertEqual(nothing.state, "completed")
        self.assertNotIn("recorded", nothing.meta)
        with self.assertRaises(NotRecorded):
            fetch_recorded(nothing)
        too_large = RecordedWorker.enqueue({"size": TOO_LARGE})
        self.assertIn("over its recorded limit of 2,000 bytes", too_large.errors[0]["error"])
        self.assertEqual(too_large.state, "retryable")
        plain = PlainWorker.enqueue({})
        self.assertEqual((plain.state, plain.meta), ("completed", {}))
        self.assertEqual(Job.objects.count(), 0)

    def test_drain_queue_records_values_of_many_types(self):
        jobs = {name: RecordedWorker.enqueue(value_args(value))
                for name, value in VALUES.items()}
        default = RecordedWorker.enqueue({"n": 4})
        nothing = RecordedWorker.enqueue({"none": True})
        too_large = RecordedWorker.enqueue({"size": TOO_LARGE})
        opaque = RecordedWorker.enqueue({"opaque": True})
        plain = PlainWorker.enqueue({})
        counts = drain_queue(QUEUE)
        self.assertEqual((counts["completed"], counts["failed"]), (len(VALUES) + 3, 2))
        for name, value in VALUES.items():
            with self.subTest(name):
                job = reload(jobs[name])
                self.assertEqual(job.state, "completed")
                self.assertIs(job.meta["recorded"], True)
                self.assertIsInstance(job.meta["return"], str)  # packed: compressed base64
                assert_same(self, value, fetch_recorded(job))
        self.assertEqual(fetch_recorded(reload(default)),
                         {"n": 4, "at": datetime.date(2026, 12, 2),
                          "price": decimal.Decimal("9.90"), "pair": (1, 2)})
        for job in (nothing, plain):
            job = reload(job)
            self.assertEqual((job.state, job.meta), ("completed", {}))
            with self.assertRaises(NotRecorded):
                fetch_recorded(job)
        assert_too_large(self, reload(too_large))
        assert_not_encodable(self, reload(opaque))

    def test_a_value_just_under_the_limit_is_recorded(self):
        # Random bytes barely compress: find a size whose packed value fits in 2,000 bytes.
        size = 1_900
        while packed_size_of(RecordedWorker().perform(Job(args={"size": size}))) > 2_000:
            size -= 10
        job = RecordedWorker.enqueue({"size": size})
        drain_queue(QUEUE)
        self.assertEqual(len(fetch_recorded(reload(job))), size)

    def test_the_meta_of_the_job_is_kept(self):
        job = RecordedWorker.enqueue({"n": 1}, meta={"tenant": "acme"})
        drain_queue(QUEUE)
        meta = reload(job).meta
        self.assertEqual((meta["tenant"], meta["recorded"]), ("acme", True))

    def _run_batch(self, jobs):
        """Fetch ``jobs`` and execute them as a producer does; return their outcomes."""
        engine = get_engine()
        fetched = engine.fetch_jobs(QUEUE, 100, ["test", "ack"], timezone.now(),
                                    ids=[job.pk for job in jobs])
        self.assertEqual(len(fetched), len(jobs))
        outcomes = [execute(Running(job), reset=False)[0] for job in fetched]
        self.assertEqual({outcome.state for outcome in outcomes}, {"completed"})
        return engine, outcomes

    def assertOneUpdate(self, statements, count):
        """On PostgreSQL the server completed exactly one statement, an UPDATE of ``count``
        rows (a libpq trace: transaction statements would show); on SQLite Django sent one
        UPDATE."""
        if connection.vendor == "postgresql":
            self.assertEqual(statements, [f"UPDATE {count}"])
        else:
            self.assertEqual(len(statements), 1, statements)
            self.assertTrue(statements[0].startswith("UPDATE"), statements)

    def test_a_batch_of_recorded_completions_is_one_statement(self):
        jobs = [RecordedWorker.enqueue(value_args({"n": i, "at": datetime.date(2026, 1, i + 1)}))
                for i in range(20)]
        _, outcomes = self._run_batch(jobs)
        with no_state_changed_receivers(), count_statements() as statements:
            ack(outcomes)
        self.assertOneUpdate(statements, 20)
        for i, job in enumerate(jobs):
            job = reload(job)
            self.assertEqual(job.state, "completed")
            self.assertEqual(fetch_recorded(job), {"n": i, "at": datetime.date(2026, 1, i + 1)})

    def test_recorded_and_plain_completions_together_are_one_statement(self):
        # docs/pro-workers.md: "a batch of completed jobs is still written in one statement,
        # recorded or not"; the jobs without a recorded result keep their meta.
        recorded = [RecordedWorker.enqueue({"n": i}, meta={"i": i}) for i in range(5)]
        nothing = [RecordedWorker.enqueue({"none": True}, meta={"i": i}) for i in range(3)]
        plain = [PlainWorker.enqueue({"n": i}, meta={"i": i}) for i in range(3)]
        _, outcomes = self._run_batch([*recorded, *nothing, *plain])
        with no_state_changed_receivers(), count_statements() as statements:
            ack(outcomes)
        self.assertOneUpdate(statements, 11)
        for i, job in enumerate(recorded):
            job = reload(job)
            self.assertEqual((job.state, job.meta["i"], fetch_recorded(job)["n"]),
                             ("completed", i, i))
        for i, job in enumerate([*nothing, *plain]):
            job = reload(job)
            self.assertEqual((job.state, job.meta), ("completed", {"i": i % 3}))


class RecordedToTests(QuietFailures, TestCase):
    """``recorded = {"to": key}``: the value under that meta key, ``meta["recorded"]`` naming
    it; ``fetch_recorded`` reads it from the job alone."""

    def test_drain_queue_records_under_the_key(self):
        job = RecordedToWorker.enqueue({"sku": "A-1"}, meta={"by": "shop"})
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        job = reload(job)
        self.assertEqual(set(job.meta), {"by", "recorded", "price"})
        self.assertEqual(job.meta["recorded"], "price")
        self.assertEqual(fetch_recorded(job), {"sku": "A-1", "price": decimal.Decimal("9.90")})
        self.assertEqual(terms.unpack(job.meta["price"]), fetch_recorded(job))

    def test_perform_job_and_inline_mode(self):
        self.assertEqual(perform_job(RecordedToWorker, {"sku": "B"})["sku"], "B")
        with with_testing_mode("inline"):
            job = RecordedToWorker.enqueue({"sku": "C"})
        self.assertEqual((job.state, job.meta["recorded"]), ("completed", "price"))
        self.assertEqual(fetch_recorded(job)["sku"], "C")

    def test_the_limit_applies(self):
        big = random.Random(1).randbytes(TOO_LARGE)
        job = RecordedToWorker.enqueue(value_args(big))
        drain_queue(QUEUE)
        job = reload(job)
        self.assertEqual(job.state, "retryable")
        self.assertIn("over its recorded limit of 2,000 bytes", job.errors[0]["error"])
        self.assertNotIn("price", job.meta)

    def test_the_key_is_read_from_the_job_not_from_the_worker(self):
        # Jobs recorded under the default key, or under a key the worker no longer uses,
        # still read back: meta["recorded"] says where the value is.
        packed = terms.pack((1, 2))
        for meta in ({"recorded": True, "return": packed},
                     {"recorded": "old_key", "old_key": packed}):
            with self.subTest(meta=meta):
                self.assertEqual(fetch_recorded(Job(pk=1, meta=meta)), (1, 2))
        for meta in ({"recorded": "price"}, {"recorded": True}, {"price": packed},
                     {"recorded": 1, "return": packed}, {"recorded": False, "return": packed}):
            with self.subTest(meta=meta), self.assertRaises(NotRecorded):
                fetch_recorded(Job(pk=1, meta=meta))


class AdminTests(QuietFailures, TestCase):
    """The job page shows the recorded result decoded and escaped, and the meta panel does
    not show the packed blob."""

    def setUp(self):
        super().setUp()
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))

    def page(self, job) -> str:
        response = self.client.get(reverse("admin:django_jobs_job_change", args=[job.pk]))
        self.assertEqual(response.status_code, 200)
        return response.content.decode()

    def test_the_result_panel_shows_the_value_decoded_and_escaped(self):
        value = {"html": "<script>alert('owned')</script>", "price": decimal.Decimal("9.90"),
                 "at": datetime.date(2026, 12, 2)}
        job = RecordedWorker.enqueue(value_args(value))
        drain_queue(QUEUE)
        job = reload(job)
        html = self.page(job)
        self.assertIn('id="panel-result"', html)
        self.assertIn("Recorded result", html)
        self.assertNotIn("<script>alert(", html)
        self.assertIn("&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;", html)
        self.assertIn("Decimal(&#x27;9.90&#x27;)", html)
        self.assertIn("datetime.date(2026, 12, 2)", html)
        # The meta panel points at the result instead of showing the packed blob.
        self.assertNotIn(job.meta["return"], html)
        self.assertIn("(the recorded result, below)", html)

    def test_a_result_recorded_under_another_key_is_shown(self):
        job = RecordedToWorker.enqueue({"sku": "<b>A-1</b>"})
        drain_queue(QUEUE)
        job = reload(job)
        html = self.page(job)
        self.assertIn('id="panel-result"', html)
        self.assertIn("&lt;b&gt;A-1&lt;/b&gt;", html)
        self.assertIn("Decimal(&#x27;9.90&#x27;)", html)
        self.assertNotIn(job.meta["price"], html)
        self.assertIn("(the recorded result, below)", html)

    def test_no_result_panel_without_a_recorded_result(self):
        job = PlainWorker.enqueue({})
        drain_queue(QUEUE)
        self.assertNotIn('id="panel-result"', self.page(job))

    def test_a_result_that_cannot_be_read_is_reported(self):
        job = RecordedWorker.enqueue({"n": 1})
        drain_queue(QUEUE)
        Job.objects.filter(pk=job.pk).update(meta={"recorded": True, "return": "garbage!"})
        html = self.page(job)
        self.assertIn("The recorded result cannot be read: not a packed term", html)

    def test_a_forged_result_with_an_unhashable_tag_is_reported(self):
        job = RecordedWorker.enqueue({"n": 1})
        drain_queue(QUEUE)
        forged = base64.b64encode(zlib.compress(json.dumps({"__term__": [["x"], 1]})
                                                .encode())).decode()
        Job.objects.filter(pk=job.pk).update(meta={"recorded": True, "return": forged})
        self.assertIn("The recorded result cannot be read", self.page(job))


class RunjobsTests(QuietFailures, RunjobsMixin, TransactionTestCase):
    def test_runjobs_records_values_and_fails_the_ones_over_the_limit(self):
        jobs = {name: RecordedWorker.enqueue(value_args(value))
                for name, value in VALUES.items()}
        nothing = RecordedWorker.enqueue({"none": True})
        too_large = RecordedWorker.enqueue({"size": TOO_LARGE})
        opaque = RecordedWorker.enqueue({"opaque": True})
        plain = PlainWorker.enqueue({})
        to_key = RecordedToWorker.enqueue(value_args(VALUES["nan-free nested"]))
        ids = [job.pk for job in (*jobs.values(), nothing, too_large, opaque, plain, to_key)]
        node = self.start_runjobs("recorded", "--queue", f"{QUEUE}=4")
        watched = Job.objects.filter(pk__in=ids)
        wait_until(lambda: watched.filter(state__in=["completed", "retryable"]).count()
                   == len(ids), 30, what="the recorded jobs to complete or fail",
                   describe=lambda: self.runjobs_report(describe_jobs(watched)))
        self.assertTrue(node.alive(), self.runjobs_report("the node died"))
        self.stop_runjobs(node, within=30)

        for name, value in VALUES.items():
            with self.subTest(name):
                job = reload(jobs[name])
                self.assertEqual(job.state, "completed", job.errors)
                assert_same(self, value, fetch_recorded(job))
        for job in (nothing, plain):
            job = reload(job)
            self.assertEqual((job.state, job.meta), ("completed", {}))
        assert_too_large(self, reload(too_large))
        assert_not_encodable(self, reload(opaque))
        to_key = reload(to_key)
        self.assertEqual((to_key.state, to_key.meta["recorded"]), ("completed", "price"))
        assert_same(self, VALUES["nan-free nested"], fetch_recorded(to_key))
        to_key = reload(to_key)
        self.assertEqual((to_key.state, to_key.meta["recorded"]), ("completed", "price"))
        assert_same(self, VALUES["nan-free nested"], fetch_recorded(to_key))
