"""Worker hooks (docs/hooks-and-aliases.md): ``before_new``, ``before_process`` and
``after_process``; implicit, explicit and global hooks and their order; configuration errors.

Every behaviour runs three ways in this process (``perform_job``, inline mode, and
``drain_queue`` in manual mode, which claims and acks through the engine like ``runjobs``), and
the main ones in a real ``runjobs`` child process, whose hooks leave marker jobs behind
(tests/feature_workers.py).
"""

import gc
import logging

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, TestCase, TransactionTestCase

from django_jobs import (Cancel, ConfigurationError, Discard, InvalidJobError, Snooze, Worker,
                         attach_hook, detach_hook)
from django_jobs import features, registry
from django_jobs.features import register_feature, unregister_feature
from django_jobs.insertion import insert_all
from django_jobs.models import Job
from django_jobs.testing import with_testing_mode

from .feature_workers import (LATER, QUEUE, DrainRuns, FailingAfterHook, GlobalHook,
                              HookedWorker, ImplicitOnlyWorker, InlineRuns, ListedHook,
                              NoHookMethods, PerformJobRuns, PlainWorker, calls, marks)
from .helpers import describe_jobs
from .processes import RunjobsMixin
from .waits import wait_until

HOOKED = HookedWorker.worker_path


def quiet(test, name: str) -> None:
    """Failed attempts log a warning each: keep the test output quiet."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    test.addCleanup(logger.setLevel, level)


def hooks_steps(worker) -> list:
    """The configurations of the hooks feature in ``worker``'s pipeline (none when no hook
    applies to it)."""
    return [config for feature, config in features.pipeline(worker) if feature.name == "hooks"]


class HookBehaviour:
    """The hook tests; mixed below with each way of running a job (``self.run_job`` /
    ``self.submit_job``, see tests/feature_workers.py)."""

    def setUp(self):
        super().setUp()
        calls.clear()
        quiet(self, "django_jobs.executor")

    def attach(self, hook):
        attach_hook(hook)
        self.addCleanup(detach_hook, hook)

    def pk(self, ran):
        """The job's id as hooks see it: the row's for drain_queue, None otherwise."""
        return ran.job.pk if self.writes else None

    def performed(self) -> list[tuple]:
        """(args, priority, meta) of each perform."""
        return [tuple(rest) for _who, *rest in calls.of("perform")]

    # -- before_new -----------------------------------------------------------------------

    def test_before_new_transforms_args_and_options(self):
        ran = self.run_job(HookedWorker, {"new": "transform", "value": 3}, meta={"by": "test"})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(self.performed(), [
            ({"new": "transform", "value": 3, "stamped": True}, 7, {"by": "test", "tenant": 42})])
        if ran.job is not None:
            self.assertEqual((ran.job.args["stamped"], ran.job.priority, ran.job.meta),
                             (True, 7, {"by": "test", "tenant": 42}))
        if self.via == "perform_job":
            self.assertEqual(ran.result, 3)

    def test_before_new_refusal_names_the_hook_and_writes_nothing(self):
        with self.assertRaisesMessage(InvalidJobError, f"before_new hook {HOOKED} refused the "
                                                       f"job: no jobs today") as caught:
            self.submit_job(HookedWorker, {"new": "refuse"})
        self.assertIsInstance(caught.exception.__cause__, ValueError)
        self.assertEqual(calls.who("before_new"), ["implicit"], "later hooks never see it")
        self.assertEqual(self.performed(), [])
        self.assertEqual(Job.objects.count(), 0)

    def test_invalid_job_error_and_validation_error_pass_through(self):
        with self.assertRaisesMessage(InvalidJobError, "invalid as given") as caught:
            self.submit_job(HookedWorker, {"new": "invalid"})
        self.assertEqual(str(caught.exception), "invalid as given")
        with self.assertRaises(ValidationError) as caught:
            self.submit_job(HookedWorker, {"new": "validation"})
        self.assertEqual(caught.exception.messages, ["not valid here"])
        self.assertEqual(self.performed(), [])
        self.assertEqual(Job.objects.count(), 0)

    def test_a_bad_before_new_return_value_is_a_clear_error(self):
        with self.assertRaisesMessage(InvalidJobError, f"before_new hook {HOOKED} must return "
                                                       f"(args, opts) as two dicts, not "
                                                       f"{{'new': 'bad_return'}}"):
            self.submit_job(HookedWorker, {"new": "bad_return"})
        self.assertEqual(self.performed(), [])
        self.assertEqual(Job.objects.count(), 0)

    # -- before_process ---------------------------------------------------------------------

    def test_before_process_may_change_the_job(self):
        ran = self.run_job(HookedWorker, {"before": "replace", "value": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(self.performed()[0][0], {"before": "replace", "value": 1,
                                                  "replaced": True})
        calls.clear()
        ran = self.run_job(HookedWorker, {"before": "mutate", "value": 2})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(self.performed()[0][0], {"before": "mutate", "value": 2,
                                                  "mutated": True})

    def test_before_process_short_circuits_without_calling_perform(self):
        for mode, state, result, error in (
                ("cancel", "cancel", Cancel("before cancelled"), "Cancelled: before cancelled"),
                ("discard", "discard", Discard("before discarded"),
                 "Discarded: before discarded"),
                ("snooze", "snooze", Snooze(LATER), "")):
            with self.subTest(mode):
                calls.clear()
                ran = self.run_job(HookedWorker, {"before": mode})
                self.assertEqual(ran.state, state)
                self.assertEqual(ran.error, error)
                self.assertEqual(self.performed(), [], "perform must not be called")
                self.assertEqual(calls.who("before_process"), ["implicit"],
                                 "the first before_process that short-circuits wins")
                args = {"before": mode}
                self.assertEqual(calls.of("after_process"), [
                    (who, state, self.pk(ran), args, repr(result))
                    for who in ("implicit", "listed", "partial")])
                if self.via != "drain_queue":
                    self.assertEqual(ran.result, result)
                if state == "snooze" and ran.job is not None:
                    self.assertEqual(ran.job.meta, {"snoozed": 1})

    def test_before_process_raising_fails_the_attempt(self):
        for mode, kind, message in (
                ("raise", RuntimeError, "RuntimeError: before_process raised"),
                ("return_error", LookupError, "LookupError: before_process returned an error")):
            with self.subTest(mode):
                calls.clear()
                ran = self.run_job(HookedWorker, {"before": mode})
                self.assertEqual(ran.state, "error", "retryable")
                self.assertIn(message, ran.error)
                self.assertEqual(self.performed(), [], "perform must not be called")
                self.assertEqual(calls.of("after_process"), [
                    (who, "error", self.pk(ran), {"before": mode}, None)
                    for who in ("implicit", "listed", "partial")])
                if self.via == "perform_job":
                    self.assertIsInstance(ran.exc, kind)
                else:
                    self.assertEqual(ran.job.attempt, 1)
                    self.assertIn("Traceback (most recent call last)", ran.error)

    def test_a_bad_before_process_return_value_fails_the_attempt(self):
        ran = self.run_job(HookedWorker, {"before": "bad"})
        self.assertEqual(ran.state, "error")
        self.assertIn(f"before_process hook {HOOKED} returned 42", ran.error)
        self.assertEqual(self.performed(), [])

    def test_a_failing_before_process_on_the_last_attempt_discards(self):
        ran = self.run_job(HookedWorker, {"before": "raise"}, max_attempts=1)
        self.assertEqual(ran.state, "discard")
        self.assertIn("RuntimeError: before_process raised", ran.error)
        self.assertEqual(calls.who("after_process"), ["implicit", "listed", "partial"])
        self.assertEqual({state for _who, state, *_ in calls.of("after_process")}, {"discard"})

    # -- after_process ----------------------------------------------------------------------

    def test_after_process_sees_every_state_the_job_and_the_result(self):
        cases = [
            ({"value": 5}, {}, "complete", 5, ""),
            ({"do": "cancel"}, {}, "cancel", repr(Cancel("perform cancelled")),
             "Cancelled: perform cancelled"),
            ({"do": "discard"}, {}, "discard", repr(Discard("perform discarded")),
             "Discarded: perform discarded"),
            ({"do": "raise"}, {"max_attempts": 1}, "discard", None, "ValueError: perform failed"),
            ({"do": "raise"}, {}, "error", None, "ValueError: perform failed"),
            ({"do": "snooze"}, {}, "snooze", repr(Snooze(LATER)), ""),
        ]
        for args, options, state, result, error in cases:
            with self.subTest(state=state, args=args, options=options):
                calls.clear()
                ran = self.run_job(HookedWorker, args, **options)
                self.assertEqual(ran.state, state)
                self.assertIn(error, ran.error)
                self.assertEqual(len(self.performed()), 1)
                self.assertEqual(calls.of("after_process"), [
                    (who, state, self.pk(ran), args, result)
                    for who in ("implicit", "listed", "partial")])

    def test_an_exception_in_after_process_is_logged_and_changes_nothing(self):
        with self.assertLogs("django_jobs.hooks", "ERROR") as logs:
            ran = self.run_job(HookedWorker, {"after": "raise", "value": 4})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(ran.error, "")
        [line] = logs.output
        self.assertIn(f"after_process hook {HOOKED} failed", line)
        self.assertIn("RuntimeError: worker after_process failed", line)
        self.assertEqual(calls.who("after_process"), ["implicit", "listed", "partial"],
                         "every after_process runs")
        if self.via == "perform_job":
            self.assertEqual(ran.result, 4)
        # A failed attempt stays failed, with its own error only.
        calls.clear()
        with self.assertLogs("django_jobs.hooks", "ERROR"):
            ran = self.run_job(HookedWorker, {"after": "raise", "do": "raise"})
        self.assertEqual(ran.state, "error")
        self.assertIn("ValueError: perform failed", ran.error)
        if ran.job is not None:
            self.assertEqual(len(ran.job.errors), 1)

    def test_an_exception_in_a_global_after_process_changes_nothing(self):
        self.attach(FailingAfterHook)
        with self.assertLogs("django_jobs.hooks", "ERROR") as logs:
            ran = self.run_job(PlainWorker, {"value": 8})
        self.assertEqual(ran.state, "complete")
        self.assertIn("after_process hook tests.feature_workers.FailingAfterHook failed",
                      logs.output[0])
        self.assertEqual(calls.of("after_process"),
                         [("failing", "complete", self.pk(ran), {"value": 8}, 8)])

    def test_the_worker_hooks_run_on_the_instance_that_performed(self):
        ran = self.run_job(ImplicitOnlyWorker, {"n": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(calls.of("after_process"),
                         [("implicit", "complete", self.pk(ran), {"n": 1}, "done", True)])

    # -- order and global hooks -------------------------------------------------------------

    def test_implicit_then_explicit_then_global(self):
        self.attach(GlobalHook)
        ran = self.run_job(HookedWorker, {"trail": [], "value": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(calls.who("before_new"), ["implicit", "listed", "global"])
        # Each before_new sees the args the ones before it returned.
        self.assertEqual(self.performed()[0][0]["trail"], ["implicit", "listed", "global"])
        self.assertEqual(calls.who("before_process"), ["implicit", "listed", "global"])
        self.assertEqual(calls.who("after_process"), ["implicit", "listed", "partial", "global"])
        self.assertEqual([what for _who, what, *_ in calls.all()],
                         ["before_new"] * 3 + ["before_process"] * 3 + ["perform"]
                         + ["after_process"] * 4)

    def test_a_listed_hook_short_circuit_skips_the_global_before_process(self):
        self.attach(GlobalHook)
        ran = self.run_job(HookedWorker, {"listed_before": "snooze"})
        self.assertEqual(ran.state, "snooze")
        self.assertEqual(calls.who("before_process"), ["implicit", "listed"])
        self.assertEqual(self.performed(), [])
        self.assertEqual(calls.who("after_process"), ["implicit", "listed", "partial", "global"])

    def test_a_global_hook_class_reaches_every_worker_until_detached(self):
        attach_hook(GlobalHook)
        self.addCleanup(detach_hook, GlobalHook)
        attach_hook(GlobalHook)  # attaching again changes nothing
        ran = self.run_job(PlainWorker, {"value": 1})
        self.assertEqual(ran.state, "complete")
        self.assertEqual(calls.who("before_new"), ["global"])
        self.assertEqual(calls.who("before_process"), ["global"])
        self.assertEqual(calls.of("after_process"),
                         [("global", "complete", self.pk(ran), {"value": 1}, 1)])
        detach_hook(GlobalHook)
        calls.clear()
        ran = self.run_job(PlainWorker, {"value": 2})
        self.assertEqual(ran.state, "complete")
        self.assertEqual([what for _who, what, *_ in calls.all()], ["perform"])
        self.assertEqual(hooks_steps(PlainWorker), [], "detaching restores the pipeline")

    def test_a_global_hook_object_is_called_itself_until_detached(self):
        class Seen:
            def __init__(self):
                self.seen = []

            def after_process(self, state, job, result):
                self.seen.append((state, job.args, result))

        hook = Seen()
        self.attach(hook)
        attach_hook(hook)  # once only
        self.run_job(PlainWorker, {"value": 1})
        self.run_job(HookedWorker, {"do": "raise"})
        self.assertEqual(hook.seen, [("complete", {"value": 1}, 1),
                                     ("error", {"do": "raise"}, None)])
        # Global hooks run after the worker's own.
        self.assertEqual(calls.who("after_process"), ["implicit", "listed", "partial"])
        detach_hook(hook)
        self.run_job(PlainWorker, {"value": 2})
        self.assertEqual(len(hook.seen), 2)


class PerformJobHookTests(PerformJobRuns, HookBehaviour, TestCase):
    pass


class InlineHookTests(InlineRuns, HookBehaviour, TestCase):
    pass


class DrainHookTests(DrainRuns, HookBehaviour, TestCase):
    pass


class InsertAllRefusalTests(TestCase):
    """A refusal while the jobs of an ``insert_all`` are built: none of them is written."""

    def setUp(self):
        calls.clear()

    def test_nothing_is_written_when_one_job_is_refused(self):
        for mode in (None, "manual", "inline"):
            with self.subTest(mode=mode), with_testing_mode(mode):
                calls.clear()
                with self.assertRaisesMessage(InvalidJobError, "refused the job: no jobs today"):
                    insert_all(HookedWorker.new(args)
                               for args in ({"value": 1}, {"new": "refuse"}, {"value": 2}))
                self.assertEqual(Job.objects.count(), 0)
                self.assertEqual(calls.of("perform"), [], "inline mode ran none of them")
                self.assertEqual(calls.who("before_new"), ["implicit", "listed", "implicit"])


class HookConfigurationTests(SimpleTestCase):
    """Bad ``hooks`` are refused when the worker class is defined, naming the worker."""

    def setUp(self):
        # A class whose definition failed stays in the worker registry until collected.
        self.addCleanup(gc.collect)

    def test_hooks_must_be_a_list(self):
        for hooks in (ListedHook, "tests.feature_workers.ListedHook", ListedHook(), 1):
            with self.subTest(hooks=hooks):
                with self.assertRaisesMessage(ConfigurationError, "hooks must be a list of hook "
                                                                  "classes") as caught:
                    type("BadHooks", (Worker,), {"__module__": __name__, "hooks": hooks,
                                                 "perform": lambda self, job: None})
                self.assertTrue(str(caught.exception).startswith(f"{__name__}.BadHooks: "),
                                str(caught.exception))

    def test_a_hook_class_needs_one_of_the_methods(self):
        with self.assertRaisesMessage(ConfigurationError, "defines none of before_new, "
                                                          "before_process, after_process") as c:
            class NoMethods(Worker):
                hooks = [ListedHook, NoHookMethods]

                def perform(self, job):
                    return None
        self.assertIn(f"{__name__}.HookConfigurationTests.test_a_hook_class_needs_one_of_the_"
                      f"methods.<locals>.NoMethods", str(c.exception))

    def test_good_hooks_lists(self):
        class Listed(Worker):
            hooks = (ListedHook, GlobalHook())  # a tuple, and an object instead of a class

            def perform(self, job):
                return None

        [(implicit, explicit)] = hooks_steps(Listed)
        self.assertFalse(implicit)
        self.assertEqual([type(hook) for hook in explicit], [ListedHook, GlobalHook])

    def test_attach_hook_needs_one_of_the_methods(self):
        with self.assertRaisesMessage(ConfigurationError, "attach_hook: "):
            attach_hook(NoHookMethods)
        self.addCleanup(detach_hook, NoHookMethods)  # in case it was attached after all
        self.assertEqual(hooks_steps(PlainWorker), [])

    def test_a_failed_definition_does_not_break_later_registrations(self):
        gc.disable()
        self.addCleanup(gc.enable)
        with self.assertRaises(ConfigurationError):
            type("Broken", (Worker,), {"__module__": __name__, "hooks": ListedHook,
                                       "perform": lambda self, job: None})
        unrelated = features.Feature()
        self.addCleanup(unregister_feature, unrelated)
        register_feature(unrelated)  # raises the Broken class's error
        self.assertNotIn(f"{__name__}.Broken",
                         [worker.worker_path for worker in registry.workers()])


class RunjobsHookTests(RunjobsMixin, TransactionTestCase):
    """The hooks in a real ``runjobs`` child process: each hook records a marker job."""

    NODE = "hooks-node"

    def setUp(self):
        calls.clear()

    def run_on_node(self, jobs: dict) -> dict:
        """Start a node on the hooks queue, wait until it has run ``jobs`` (name -> job), stop
        it; return the rows by name."""
        node = self.start_runjobs(self.NODE, "--queue", f"{QUEUE}=4", "--no-plugins")
        ids = [job.pk for job in jobs.values()]
        pending = Job.objects.filter(pk__in=ids, state__in=["available", "executing"])
        wait_until(lambda: not pending.exists(), 30, what=f"{len(ids)} jobs to be run by "
                   f"{self.NODE}", describe=lambda: self.runjobs_report(describe_jobs()))
        self.stop_runjobs(node, within=30)
        rows = {row.pk: row for row in Job.objects.filter(pk__in=ids)}
        for row in rows.values():
            self.assertEqual(row.attempted_by[0], self.NODE)
        return {name: rows[job.pk] for name, job in jobs.items()}

    def assertAfter(self, row, state: str, result) -> None:
        self.assertEqual(marks(row.pk, "after_process"), [
            (who, state, row.pk, row.args, result) for who in ("implicit", "listed", "partial")],
            f"after_process of job {row.pk} ({row.state})")

    def test_hooks_of_every_outcome_in_runjobs(self):
        mark = {"mark": True}
        rows = self.run_on_node({
            "done": HookedWorker.enqueue({**mark, "value": 5}),
            "before_cancel": HookedWorker.enqueue({**mark, "before": "cancel"}),
            "discard": HookedWorker.enqueue({**mark, "do": "discard"}),
            "exhausted": HookedWorker.enqueue({**mark, "do": "raise"}, max_attempts=1),
            "failed": HookedWorker.enqueue({**mark, "do": "raise"}),
            "snooze": HookedWorker.enqueue({**mark, "do": "snooze"}),
            "after_raises": HookedWorker.enqueue({**mark, "after": "raise", "value": 6}),
        })
        done = rows["done"]
        self.assertEqual(done.state, "completed")
        self.assertAfter(done, "complete", 5)
        self.assertEqual(marks(done.pk, "before_process"), [("implicit",), ("listed",)])
        self.assertEqual(len(marks(done.pk, "perform")), 1)

        cancelled = rows["before_cancel"]
        self.assertEqual(cancelled.state, "cancelled")
        self.assertEqual(cancelled.errors[-1]["error"], "Cancelled: before cancelled")
        self.assertEqual(marks(cancelled.pk, "perform"), [], "perform must not be called")
        self.assertEqual(marks(cancelled.pk, "before_process"), [("implicit",)])
        self.assertAfter(cancelled, "cancel", repr(Cancel("before cancelled")))

        self.assertEqual(rows["discard"].state, "discarded")
        self.assertAfter(rows["discard"], "discard", repr(Discard("perform discarded")))
        exhausted = rows["exhausted"]
        self.assertEqual(exhausted.state, "discarded")
        self.assertIn("ValueError: perform failed", exhausted.errors[-1]["error"])
        self.assertAfter(exhausted, "discard", None)
        failed = rows["failed"]
        self.assertEqual((failed.state, failed.attempt), ("retryable", 1))
        self.assertIn("ValueError: perform failed", failed.errors[-1]["error"])
        self.assertAfter(failed, "error", None)
        snoozed = rows["snooze"]
        self.assertEqual((snoozed.state, snoozed.meta), ("scheduled", {"snoozed": 1}))
        self.assertAfter(snoozed, "snooze", repr(Snooze(LATER)))
        # An exception in after_process is logged by the node and changes nothing.
        after_raises = rows["after_raises"]
        self.assertEqual((after_raises.state, after_raises.errors), ("completed", []))
        self.assertAfter(after_raises, "complete", 6)
        self.assertIn(f"after_process hook {HOOKED} failed", self.runjobs_processes[0].log())

    def test_before_new_transform_reaches_runjobs(self):
        job = HookedWorker.enqueue({"mark": True, "new": "transform", "value": 1},
                                   meta={"by": "test"})
        self.assertEqual(calls.who("before_new"), ["implicit", "listed"], "run at enqueue")
        row = self.run_on_node({"job": job})["job"]
        self.assertEqual((row.state, row.priority), ("completed", 7))
        self.assertEqual(marks(row.pk, "perform"), [
            ("worker", {"mark": True, "new": "transform", "value": 1, "stamped": True}, 7,
             {"by": "test", "tenant": 42})])
        self.assertAfter(row, "complete", 1)
