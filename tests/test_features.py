"""The job-feature protocol (docs/features.md): ``setup``, ``prepare``/``build`` (built),
``before``/``after`` (run) and ``state_changed`` (acked), with features registered only for
the duration of a test.

The run moment is checked three ways in this process (``perform_job``, inline mode and
``drain_queue`` in manual mode) and, for what ``after`` writes, in a real ``runjobs`` child.
"""

import gc
import logging
import os

from django.test import TestCase, TransactionTestCase

from django_jobs import (Cancel, Feature, InvalidJobError, UnknownOptionError, Worker,
                         control, signals)
from django_jobs.features import register_feature, registered_features, unregister_feature
from django_jobs.models import Job, JobChange
from django_jobs.testing import drain_queue, with_testing_mode

from .feature_workers import (FEATURE_QUEUE, LATER, META_STAMP, DrainRuns, FeatureWorker,
                              InlineRuns, OtherFeatureWorker, PerformJobRuns, calls, note)
from .helpers import describe_jobs
from .processes import RunjobsMixin
from .waits import wait_until

WORKER = FeatureWorker.worker_path


def _shown(value):
    """A result as the features record it: repr for the control results."""
    return value if value is None or isinstance(value, (int, str, dict)) else repr(value)


class Recorder(Feature):
    """A job feature that records each of its calls in ``calls`` as ``(label, method, ...)``.

    It applies to ``workers`` (its configuration for them is its label) and declares
    ``options``; ``on_prepare``, ``on_before`` and ``on_after`` (functions) add behaviour.
    """

    def __init__(self, label, *, workers=(FeatureWorker,), options=(), on_prepare=None,
                 on_before=None, on_after=None):
        self.name = label
        self.options = tuple(options)
        self.workers = workers
        self.on_prepare = on_prepare
        self.on_before = on_before
        self.on_after = on_after
        #: Every worker class setup() was called for, in order.
        self.setups = []

    def setup(self, worker):
        self.setups.append(worker)
        return self.name if worker in self.workers else None

    def prepare(self, worker, args, options, config):
        note(None, self.name, "prepare", config, worker.__name__, dict(options))
        return self.on_prepare(args, options) if self.on_prepare else args

    def build(self, job, options, config):
        note(None, self.name, "build", config, dict(job.args))

    def before(self, attempt, config):
        note(None, self.name, "before", config)
        return self.on_before(attempt) if self.on_before else None

    def after(self, attempt, config):
        note(None, self.name, "after", attempt.state, _shown(attempt.result),
             type(attempt.error).__name__ if attempt.error is not None else None)
        if self.on_after:
            self.on_after(attempt)


def methods(*labels):
    """``(label, method)`` of every recorded feature call and ``("worker", "perform")``."""
    return [(who, what) for who, what, *_ in calls.all() if who in (*labels, "worker")]


class FeatureTestMixin:
    @classmethod
    def setUpClass(cls):
        # register_feature() sets up every worker class still in the registry, including one
        # whose definition failed in an earlier test and that the garbage collector has not
        # yet found (see test_hooks.HookConfigurationTests' BUG test): let those go first.
        gc.collect()
        super().setUpClass()

    def setUp(self):
        super().setUp()
        calls.clear()
        logger = logging.getLogger("django_jobs.executor")
        level = logger.level
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, level)

    def register(self, feature):
        """Register ``feature`` for this test only."""
        register_feature(feature)
        self.addCleanup(unregister_feature, feature)
        return feature


class FeatureRuns(FeatureTestMixin):
    """The run-moment tests; mixed below with each way of running a job."""

    def test_setup_returning_none_means_no_other_method_is_called(self):
        feature = self.register(Recorder("only", options=("only_option",)))
        self.assertIn(OtherFeatureWorker, feature.setups, "set up at registration")
        ran = self.run_job(OtherFeatureWorker, {"value": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(methods("only"), [("worker", "perform")])
        self.assertEqual(feature.setups.count(OtherFeatureWorker), 1, "set up once per class")
        # The same feature is called for the worker it applies to.
        calls.clear()
        self.run_job(FeatureWorker, {"value": 2})
        self.assertEqual(methods("only"), [("only", "prepare"), ("only", "build"),
                                           ("only", "before"), ("worker", "perform"),
                                           ("only", "after")])

    def test_pipeline_order(self):
        self.register(Recorder("first"))
        self.register(Recorder("second"))
        ran = self.run_job(FeatureWorker, {"value": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(methods("first", "second"), [
            ("second", "prepare"), ("first", "prepare"),   # built: the last registered first
            ("second", "build"), ("first", "build"),
            ("first", "before"), ("second", "before"),     # before: the first registered first
            ("worker", "perform"),
            ("second", "after"), ("first", "after"),       # after: the last registered first
        ])
        # Each method gets the configuration its setup returned for the worker.
        configs = {(who, what): rest[0] for who, what, *rest in calls.all()
                   if what in ("prepare", "build", "before")}
        self.assertEqual(set(configs.values()), {"first", "second"})
        self.assertTrue(all(config == who for (who, _), config in configs.items()))

    def test_a_before_result_short_circuits_perform(self):
        self.register(Recorder("outer", on_before=lambda attempt: Cancel("feature says no")))
        self.register(Recorder("inner"))
        ran = self.run_job(FeatureWorker, {"value": 1})
        self.assertEqual(ran.state, "cancel")
        self.assertEqual(ran.error, "Cancelled: feature says no")
        self.assertEqual(methods("outer", "inner")[-3:], [
            ("outer", "before"), ("inner", "after"), ("outer", "after")],
            "neither the inner before nor perform runs; every after does")
        self.assertEqual(calls.of("after"), [
            (label, "cancel", repr(Cancel("feature says no")), None)
            for label in ("inner", "outer")])

    def test_a_before_exception_fails_the_attempt_like_perform(self):
        def fail(attempt):
            raise LookupError("feature before failed")

        self.register(Recorder("failing", on_before=fail))
        ran = self.run_job(FeatureWorker, {"value": 1})
        self.assertEqual(ran.state, "error")
        self.assertIn("LookupError: feature before failed", ran.error)
        self.assertEqual(calls.of("perform"), [])
        self.assertEqual(calls.of("after"), [("failing", "error", None, "LookupError")])
        ran = self.run_job(FeatureWorker, {"value": 1}, max_attempts=1)
        self.assertEqual(ran.state, "discard")

    def test_before_may_change_the_job(self):
        def swap(attempt):
            attempt.job.args = {**attempt.job.args, "seen_by": "feature"}

        self.register(Recorder("changer", on_before=swap))
        ran = self.run_job(FeatureWorker, {"value": 1})
        self.assertEqual(ran.state, "complete")
        [(_who, args, _priority, _meta)] = calls.of("perform")
        self.assertEqual(args, {"value": 1, "seen_by": "feature"})

    def test_after_sees_the_outcome_the_result_and_the_worker(self):
        seen = []
        self.register(Recorder("watcher", on_after=lambda attempt: seen.append(
            (type(attempt.worker), attempt.job.args, attempt.traceback is not None))))
        cases = [
            ({"value": 5}, {}, "complete", 5, None),
            ({"do": "raise"}, {}, "error", None, "ValueError"),
            ({"do": "raise"}, {"max_attempts": 1}, "discard", None, "ValueError"),
            ({"do": "snooze"}, {}, "snooze", "Snooze(seconds=3600.0)", None),
            ({"do": "cancel"}, {}, "cancel", "Cancel(reason='perform cancelled')", None),
            ({"do": "discard"}, {}, "discard", "Discard(reason='perform discarded')", None),
        ]
        for args, options, state, result, error in cases:
            with self.subTest(state=state, args=args):
                calls.clear()
                seen.clear()
                ran = self.run_job(FeatureWorker, args, **options)
                self.assertEqual(ran.state, state)
                self.assertEqual(calls.of("after"), [("watcher", state, result, error)])
                self.assertEqual(seen, [(FeatureWorker, args, error is not None)])

    def register_failing_after(self):
        def fail(attempt):
            raise RuntimeError("feature after failed")

        self.register(Recorder("outer"))
        self.register(Recorder("inner", on_after=fail))

    def test_the_features_further_out_see_a_failing_after(self):
        self.register_failing_after()
        self.run_job(FeatureWorker, {"value": 5})
        # The inner after saw the completion; the outer one sees the failure instead.
        self.assertEqual(calls.of("after"), [("inner", "complete", 5, None),
                                             ("outer", "error", None, "RuntimeError")])
        calls.clear()
        self.run_job(FeatureWorker, {"value": 5}, max_attempts=1)
        self.assertEqual(calls.of("after"), [("inner", "complete", 5, None),
                                             ("outer", "discard", None, "RuntimeError")])

    def test_an_exception_in_after_fails_the_attempt(self):
        self.register_failing_after()
        ran = self.run_job(FeatureWorker, {"value": 5})
        self.assertEqual(ran.state, "error")
        self.assertIn("RuntimeError: feature after failed", ran.error)
        ran = self.run_job(FeatureWorker, {"value": 5}, max_attempts=1)
        self.assertEqual(ran.state, "discard", "out of attempts")
        self.assertIn("RuntimeError: feature after failed", ran.error)

    def test_a_per_job_option_declared_by_a_feature(self):
        def to_meta(args, options):
            if "stamp" in options:
                options["meta"] = {**options.get("meta", {}), "stamp": options["stamp"]}
            return args

        self.register(Recorder("stamper", options=("stamp",), on_prepare=to_meta))
        ran = self.run_job(FeatureWorker, {"value": 1}, stamp=3)
        self.assertEqual(ran.state, "complete")
        [(_who, _args, _priority, meta)] = calls.of("perform")
        self.assertEqual(meta, {"stamp": 3})
        # Refused for a worker the feature does not apply to, naming the feature.
        with self.assertRaisesMessage(UnknownOptionError, "job option 'stamp' belongs to the "
                                      "stamper feature, which tests.feature_workers."
                                      "OtherFeatureWorker does not use"):
            self.submit_job(OtherFeatureWorker, {"value": 2}, stamp=4)
        with self.assertRaisesMessage(UnknownOptionError,
                                      "unknown job option 'stmp', did you mean 'stamp'?"):
            self.submit_job(FeatureWorker, {}, stmp=3)

    def test_prepare_may_refuse_the_job(self):
        def refuse(args, options):
            raise InvalidJobError("prepare refused it")

        self.register(Recorder("refuser", on_prepare=refuse))
        with self.assertRaisesMessage(InvalidJobError, "prepare refused it"):
            self.submit_job(FeatureWorker, {"value": 1})
        self.assertEqual(calls.of("perform"), [])
        self.assertEqual(Job.objects.count(), 0)


class PerformJobFeatureTests(PerformJobRuns, FeatureRuns, TestCase):
    def test_an_exception_in_after_fails_the_attempt(self):
        super().test_an_exception_in_after_fails_the_attempt()


class InlineFeatureTests(InlineRuns, FeatureRuns, TestCase):
    pass


class DrainFeatureTests(DrainRuns, FeatureRuns, TestCase):
    pass


class WriteMetaRuns(FeatureTestMixin):
    """``attempt.write_meta`` goes with the outcome, whatever it is (inline mode shows it on
    the job it returns; drain_queue writes it)."""

    def test_write_meta_is_written_with_every_outcome(self):
        self.register(META_STAMP)
        for args, state, meta in (
                ({"value": 1}, "complete", {}),
                ({"do": "raise"}, "error", {}),
                ({"do": "snooze"}, "snooze", {"snoozed": 1}),
                ({"do": "cancel"}, "cancel", {}),
                ({"do": "discard"}, "discard", {})):
            with self.subTest(state=state):
                ran = self.run_job(FeatureWorker, args, meta={"by": "test"})
                self.assertEqual(ran.state, state)
                self.assertEqual(ran.job.meta, {"by": "test", **meta, "stamped": state,
                                                "stamped_by": os.getpid()})
        # Not for a worker the feature does not apply to.
        self.assertEqual(self.run_job(OtherFeatureWorker, {}, meta={"by": "test"}).job.meta,
                         {"by": "test"})


class InlineWriteMetaTests(InlineRuns, WriteMetaRuns, TestCase):
    pass


class DrainWriteMetaTests(DrainRuns, WriteMetaRuns, TestCase):
    pass


class FeatureRegistrationTests(FeatureTestMixin, TestCase):
    """Registering and unregistering features."""

    def test_register_and_unregister(self):
        before = registered_features()
        feature = Recorder("temporary")
        register_feature(feature)
        self.addCleanup(unregister_feature, feature)
        register_feature(feature)  # once only
        self.assertEqual(registered_features(), (*before, feature))
        FeatureWorker.new({})
        self.assertEqual(calls.who("prepare"), ["temporary"])
        unregister_feature(feature)
        self.assertEqual(registered_features(), before)
        calls.clear()
        FeatureWorker.new({})
        self.assertEqual(calls.all(), [], "an unregistered feature is called no more")

    def test_an_option_is_known_only_while_its_feature_is_registered(self):
        feature = self.register(Recorder("optional", options=("deadline",)))
        self.assertEqual(FeatureWorker.new({}, deadline=60).worker, WORKER)
        unregister_feature(feature)
        with self.assertRaisesMessage(UnknownOptionError, "job option 'deadline' belongs to "
                                      "the deadline feature"):
            FeatureWorker.new({}, deadline=60)

    def test_a_worker_defined_later_is_set_up_at_definition(self):
        feature = self.register(Recorder("watching"))

        class DefinedLater(Worker):
            def perform(self, job):
                return None

        self.assertEqual(feature.setups[-1], DefinedLater)


class StateChangedTests(FeatureTestMixin, TestCase):
    """The acked moment: ``state_changed`` with the changes, for acks (drain_queue) and for
    cancel, retry and delete."""

    def setUp(self):
        super().setUp()
        self.changes = []

        def receiver(sender, changes, using, **kwargs):
            self.assertIs(sender, Job)
            self.assertEqual(using, "default")
            self.changes.extend(changes)

        signals.state_changed.connect(receiver, weak=False)
        self.addCleanup(signals.state_changed.disconnect, receiver)

    def change(self, job, old, new, meta=None, attempt=0):
        """A change that leaves the job's attempt as it was (every change these tests make)."""
        return JobChange(job.pk, job.worker, job.queue, job.meta if meta is None else meta,
                         old, new, attempt=attempt, old_attempt=attempt)

    def test_acks_through_drain_queue(self):
        self.register(META_STAMP)
        with with_testing_mode("manual"):
            jobs = {args.get("do", "return"): FeatureWorker.enqueue(args) for args in (
                {"value": 1}, {"do": "raise"}, {"do": "snooze"}, {"do": "cancel"},
                {"do": "discard"})}
        self.assertEqual(self.changes, [], "inserts send nothing")
        self.assertEqual(drain_queue(FEATURE_QUEUE), {"completed": 1, "failed": 1,
                                                      "discarded": 1, "cancelled": 1,
                                                      "snoozed": 1})
        expected = {"return": ("completed", "complete", {}),
                    "raise": ("retryable", "error", {}),
                    "snooze": ("scheduled", "snooze", {"snoozed": 1}),
                    "cancel": ("cancelled", "cancel", {}),
                    "discard": ("discarded", "discard", {})}
        self.assertEqual(sorted(self.changes, key=lambda change: change.id), [
            self.change(job, "executing", expected[name][0],
                        {**expected[name][2], "stamped": expected[name][1],
                         "stamped_by": os.getpid()}, attempt=1)
            for name, job in sorted(jobs.items(), key=lambda item: item[1].pk)])
        # What the receiver saw is what was written.
        for change in self.changes:
            row = Job.objects.get(pk=change.id)
            self.assertEqual((row.state, row.meta), (change.new, change.meta))

    def test_cancel_retry_and_delete(self):
        with with_testing_mode("manual"):
            job = FeatureWorker.enqueue({"value": 1})
            later = FeatureWorker.enqueue({"value": 2}, schedule_in=LATER)
        self.assertTrue(control.cancel_job(job.pk))
        self.assertTrue(control.cancel_job(later))
        self.assertEqual(self.changes, [self.change(job, "available", "cancelled"),
                                        self.change(later, "scheduled", "cancelled")])
        self.changes.clear()
        self.assertFalse(control.cancel_job(job.pk), "already cancelled: no change")
        self.assertEqual(self.changes, [])
        self.assertTrue(control.retry_job(job.pk))
        self.assertEqual(self.changes, [self.change(job, "cancelled", "available")])
        self.changes.clear()
        self.assertTrue(control.delete_job(job.pk))
        self.assertTrue(control.delete_job(later.pk))
        self.assertEqual(self.changes, [self.change(job, "available", None),
                                        self.change(later, "cancelled", None)])
        self.assertEqual(Job.objects.count(), 0)

    def test_a_failing_receiver_rolls_the_change_back(self):
        def refuse(sender, changes, using, **kwargs):
            raise RuntimeError("receiver refuses")

        with with_testing_mode("manual"):
            job = FeatureWorker.enqueue({"value": 1})
        signals.state_changed.connect(refuse, weak=False)
        self.addCleanup(signals.state_changed.disconnect, refuse)
        with self.assertRaisesMessage(RuntimeError, "receiver refuses"):
            control.cancel_job(job.pk)
        self.assertEqual(Job.objects.get(pk=job.pk).state, "available")

    def test_inline_mode_sends_nothing(self):
        ran = InlineRuns().run_job(FeatureWorker, {"value": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(self.changes, [])


class RunjobsFeatureTests(RunjobsMixin, TransactionTestCase):
    """What ``after`` writes with ``attempt.write_meta`` is written by a ``runjobs`` child with
    the outcome (the child registers MetaStamp when it imports tests.feature_workers)."""

    NODE = "features-node"

    def test_write_meta_with_the_outcome_in_runjobs(self):
        jobs = {state: FeatureWorker.enqueue(args, meta={"by": "test"}) for state, args in (
            ("complete", {"value": 1}), ("error", {"do": "raise"}),
            ("snooze", {"do": "snooze"}), ("discard", {"do": "discard"}))}
        other = OtherFeatureWorker.enqueue({"value": 2}, meta={"by": "test"})
        ids = [job.pk for job in (*jobs.values(), other)]
        node = self.start_runjobs(self.NODE, "--queue", f"{FEATURE_QUEUE}=2", "--no-plugins")
        pending = Job.objects.filter(pk__in=ids, state__in=["available", "executing"])
        wait_until(lambda: not pending.exists(), 30, what=f"{len(ids)} jobs to be run by "
                   f"{self.NODE}", describe=lambda: self.runjobs_report(describe_jobs()))
        self.stop_runjobs(node, within=30)
        states = {"complete": "completed", "error": "retryable", "snooze": "scheduled",
                  "discard": "discarded"}
        for state, job in jobs.items():
            row = Job.objects.get(pk=job.pk)
            self.assertEqual(row.state, states[state])
            self.assertEqual(row.attempted_by[0], self.NODE)
            extra = {"snoozed": 1} if state == "snooze" else {}
            self.assertEqual(row.meta, {"by": "test", **extra, "stamped": state,
                                        "stamped_by": node.pid})
        row = Job.objects.get(pk=other.pk)
        self.assertEqual((row.state, row.meta), ("completed", {"by": "test"}))
