"""Worker aliases (docs/hooks-and-aliases.md): a job stored under a worker's old dotted path
runs on the renamed worker, through ``perform_job``, inline mode, ``drain_queue`` and a real
``runjobs`` child; bad aliases are refused at class definition; the system checks report an
alias two workers claim (``django_jobs.E010``) or that is the path of an existing worker
(``django_jobs.E011``).

The conflicting workers are defined inside the tests. The worker registry holds worker classes
weakly, but the classes claiming an alias strongly (see the BUG tests below), so every test that
defines one puts the alias table back as it found it (:func:`isolate_aliases`).
"""

import gc
import logging

from django.core import checks
from django.test import TestCase, TransactionTestCase

import django_jobs
from django_jobs import ConfigurationError, Worker, WorkerNotImportable, features, registry
from django_jobs.checks import check_aliases
from django_jobs.models import Job
from django_jobs.testing import drain_queue, with_testing_mode

from .feature_workers import (ALIAS_QUEUE, MOVED_NAME, OLD_NAME, DrainRuns, InlineRuns,
                              ListedHook, NewName, NewNameChild, PerformJobRuns, PlainWorker,
                              calls, marks)
from .helpers import describe_jobs
from .processes import RunjobsMixin
from .waits import wait_until

NEW_NAME = NewName.worker_path
CONTESTED = "tests.feature_workers.Contested"


def isolate_aliases(test) -> None:
    """Put the alias table back as it is now when ``test`` ends, and let the worker classes
    the test defined go.

    There is no public way to forget an alias: the registry keeps every class that declared
    one (registry._aliases holds them strongly), so this restores that table itself.
    """
    with registry._lock:
        saved = {alias: list(classes) for alias, classes in registry._aliases.items()}

    def restore():
        with registry._lock:
            registry._aliases.clear()
            registry._aliases.update(saved)
        registry.resolve_worker.cache_clear()
        features.reset_pipelines()  # the pipelines cache holds the classes too
        gc.collect()

    test.addCleanup(restore)


def define(name: str, **attributes) -> type:
    """A worker class named ``name`` in this module (its path ``tests.test_aliases.NAME``)."""
    return type(name, (Worker,), {"__module__": __name__, "perform": lambda self, job: None,
                                  **attributes})


def ours(errors) -> list:
    """The check messages about the aliases of this module's workers and the test workers."""
    return [e for e in errors if "tests.feature_workers" in e.msg or __name__ in e.msg]


class AliasRuns:
    """A job stored under an old path runs on the renamed worker; mixed below with each way of
    running a job."""

    def setUp(self):
        super().setUp()
        calls.clear()

    def stored_as(self, path: str, args: dict):
        """A job of NewName, stored under ``path`` (as it was written before the rename)."""
        job = django_jobs.new_job(NEW_NAME, args)
        job.worker = path
        return job

    def test_a_job_stored_under_an_old_path_runs_on_the_renamed_worker(self):
        for path in (OLD_NAME, MOVED_NAME):
            with self.subTest(path=path):
                calls.clear()
                ran = self.run_job(self.stored_as(path, {"n": 1}))
                self.assertEqual(ran.state, "complete", ran.error)
                self.assertEqual(calls.of("perform"), [("NewName", path, "NewName")])
                if self.via != "drain_queue":
                    self.assertEqual(ran.result, {"ran_on": "NewName", "stored_as": path})
                if ran.job is not None:
                    self.assertEqual(ran.job.worker, path, "the job keeps the path it had")

    def test_new_jobs_are_stored_under_the_new_path(self):
        for path in (OLD_NAME, MOVED_NAME, NEW_NAME):
            with self.subTest(path=path):
                calls.clear()
                job = django_jobs.new_job(path, {"n": 2})
                self.assertEqual(job.worker, NEW_NAME)
                ran = self.run_job(job)
                self.assertEqual(ran.state, "complete", ran.error)
                self.assertEqual(calls.of("perform"), [("NewName", NEW_NAME, "NewName")])

    def test_a_subclass_runs_its_own_jobs(self):
        ran = self.run_job(NewNameChild, {"n": 3})
        self.assertEqual(ran.state, "complete", ran.error)
        self.assertEqual(calls.of("perform"),
                         [("NewNameChild", NewNameChild.worker_path, "NewNameChild")])


class PerformJobAliasTests(PerformJobRuns, AliasRuns, TestCase):
    def test_perform_job_by_an_old_path(self):
        self.assertEqual(self.submit_job(OLD_NAME, {"n": 4}),
                         {"ran_on": "NewName", "stored_as": NEW_NAME})


class InlineAliasTests(InlineRuns, AliasRuns, TestCase):
    pass


class DrainAliasTests(DrainRuns, AliasRuns, TestCase):
    def test_a_row_whose_worker_column_names_an_old_path(self):
        with with_testing_mode("manual"):
            job = NewName.enqueue({"n": 5})
        Job.objects.filter(pk=job.pk).update(worker=OLD_NAME)
        self.assertEqual(drain_queue(ALIAS_QUEUE)["completed"], 1)
        row = Job.objects.get(pk=job.pk)
        self.assertEqual((row.state, row.worker), ("completed", OLD_NAME))
        self.assertEqual(calls.of("perform"), [("NewName", OLD_NAME, "NewName")])


class AliasDeclarationTests(TestCase):
    """What an ``aliases`` list means, and what it may hold."""

    def setUp(self):
        isolate_aliases(self)

    def test_the_registry_knows_the_aliases(self):
        self.assertEqual(registry.aliases()[OLD_NAME], [NewName])
        self.assertEqual(registry.aliases()[MOVED_NAME], [NewName])
        self.assertIs(registry.resolve_worker(OLD_NAME), NewName)
        self.assertIs(registry.resolve_worker(MOVED_NAME), NewName)
        self.assertEqual(ours(check_aliases()), [])

    def test_aliases_are_not_inherited(self):
        self.assertNotIn("aliases", NewNameChild.__dict__)
        self.assertIs(registry.resolve_worker(NewNameChild.worker_path), NewNameChild)
        # The subclass claims nothing: the alias still names NewName alone (no E010).
        self.assertEqual(registry.aliases()[OLD_NAME], [NewName])
        child = type("Child", (NewName,), {"__module__": __name__})
        self.assertNotIn(child, registry.aliases()[OLD_NAME])
        self.assertIs(registry.resolve_worker(OLD_NAME), NewName)
        self.assertEqual(ours(check_aliases()), [])

    def test_bad_aliases_are_refused_when_the_class_is_defined(self):
        cases = [
            ("tests.feature_workers.Old", "aliases must be a list of dotted paths"),
            (None, "aliases must be a list of dotted paths"),
            ({"tests.feature_workers.Old"}, "aliases must be a list of dotted paths"),
            (["NoDots"], "alias 'NoDots' must be a dotted path"),
            ([1], "alias 1 must be a dotted path"),
            ([" tests.feature_workers.Old"], "must be a dotted path"),
            (["tests.feature_workers." + "x" * 300], "must be a dotted path of at most"),
            (["tests.feature_workers.Fine", "nodots"], "alias 'nodots' must be a dotted path"),
            ([f"{__name__}.Renamed"], f"alias '{__name__}.Renamed' is the worker's own path"),
        ]
        before = registry.aliases()
        for aliases, message in cases:
            with self.subTest(aliases=aliases):
                with self.assertRaisesMessage(ConfigurationError, message) as caught:
                    define("Renamed", aliases=aliases)
                self.assertTrue(str(caught.exception).startswith(f"{__name__}.Renamed: "),
                                str(caught.exception))
        self.assertEqual(registry.aliases(), before, "a refused class claims no alias")

    def test_a_tuple_of_aliases_is_fine(self):
        worker = define("Tupled", aliases=("tests.feature_workers.TupledBefore",))
        self.assertEqual(registry.aliases()["tests.feature_workers.TupledBefore"], [worker])

    def test_the_aliases_of_a_collected_worker_are_forgotten(self):
        define("Ephemeral", aliases=["tests.feature_workers.EphemeralBefore"])
        features.reset_pipelines()
        gc.collect()
        self.assertNotIn(f"{__name__}.Ephemeral",
                         [worker.worker_path for worker in registry.workers()])
        self.assertNotIn("tests.feature_workers.EphemeralBefore", registry.aliases())

    def test_a_worker_whose_definition_failed_claims_no_alias(self):
        alias = "tests.feature_workers.HalfBefore"
        with self.assertRaisesMessage(ConfigurationError, "hooks must be a list"):
            define("HalfDefined", aliases=[alias], hooks=ListedHook)
        self.assertNotIn(alias, registry.aliases())
        with self.assertRaises(WorkerNotImportable):
            registry.resolve_worker(alias)


class AliasCheckTests(TestCase):
    """django_jobs.E010 and E011, with the conflicting workers defined in the test."""

    def setUp(self):
        # Cleanups run last in, first out: assertGone after isolate_aliases' restore.
        self.addCleanup(self.assertGone)
        isolate_aliases(self)
        logger = logging.getLogger("django_jobs.executor")
        level = logger.level
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, level)

    def assertGone(self) -> None:
        """After the test: the classes it defined are gone from the registry, and so are
        their aliases."""
        left = [worker.worker_path for worker in registry.workers()
                if worker.__module__ == __name__]
        self.assertEqual(left, [], "worker classes of the test outlived it")
        self.assertEqual(ours(check_aliases()), [], "aliases of the test outlived it")

    def test_two_workers_claiming_one_alias_is_e010(self):
        define("ClaimsFirst", aliases=[CONTESTED])
        define("ClaimsSecond", aliases=[CONTESTED, "tests.feature_workers.Other"])
        errors = ours(check_aliases())
        self.assertEqual([error.id for error in errors], ["django_jobs.E010"])
        self.assertEqual(errors[0].msg, f"Worker alias {CONTESTED!r} is claimed by "
                                        f"{__name__}.ClaimsFirst, {__name__}.ClaimsSecond.")
        self.assertIn("django_jobs.E010", [error.id for error in checks.run_checks()])
        # A job stored under it could run on either: it fails, naming the check.
        with self.assertRaisesMessage(WorkerNotImportable, "django_jobs.E010"):
            registry.resolve_worker(CONTESTED)
        job = django_jobs.new_job(NEW_NAME, {})
        job.worker = CONTESTED
        ran = DrainRuns().run_job(job)
        self.assertEqual(ran.state, "error")
        self.assertIn(f"worker {CONTESTED} is an alias claimed by {__name__}.ClaimsFirst and "
                      f"{__name__}.ClaimsSecond", ran.error)

    def test_an_alias_that_is_the_path_of_an_existing_worker_is_e011(self):
        define("Shadow", aliases=[PlainWorker.worker_path])
        errors = ours(check_aliases())
        self.assertEqual([error.id for error in errors], ["django_jobs.E011"])
        self.assertEqual(errors[0].msg, f"Worker alias {PlainWorker.worker_path!r} of "
                                        f"{__name__}.Shadow is the path of an existing worker.")
        self.assertIn("django_jobs.E011", [error.id for error in checks.run_checks()])
        # The existing worker still runs its jobs.
        self.assertIs(registry.resolve_worker(PlainWorker.worker_path), PlainWorker)


class RunjobsAliasTests(RunjobsMixin, TransactionTestCase):
    """A ``runjobs`` child runs jobs stored under an old path on the renamed worker."""

    NODE = "aliases-node"

    def test_runjobs_runs_jobs_under_an_old_path_on_the_renamed_worker(self):
        stored_old = django_jobs.new_job(NEW_NAME, {"mark": True, "n": 1})
        stored_old.worker = OLD_NAME
        django_jobs.insert(stored_old)
        updated = NewName.enqueue({"mark": True, "n": 2})
        Job.objects.filter(pk=updated.pk).update(worker=OLD_NAME)
        child = NewNameChild.enqueue({"mark": True, "n": 3})
        ids = [stored_old.pk, updated.pk, child.pk]

        node = self.start_runjobs(self.NODE, "--queue", f"{ALIAS_QUEUE}=2", "--no-plugins")
        jobs = Job.objects.filter(pk__in=ids)
        wait_until(lambda: jobs.filter(state="completed").count() == len(ids), 30,
                   what=f"{len(ids)} aliased jobs to complete on {self.NODE}",
                   describe=lambda: self.runjobs_report(describe_jobs(jobs)))
        self.stop_runjobs(node, within=30)
        for job in (stored_old, updated):
            row = Job.objects.get(pk=job.pk)
            self.assertEqual((row.worker, row.attempted_by[0]), (OLD_NAME, self.NODE))
            self.assertEqual(marks(job.pk, "perform"), [("NewName", OLD_NAME, "NewName")])
        self.assertEqual(marks(child.pk, "perform"),
                         [("NewNameChild", NewNameChild.worker_path, "NewNameChild")])
