"""Jobs of workers another deployment runs (``DJANGO_JOBS["REMOTE_WORKERS"]``).

``new_job("billing.workers.Invoice", args, queue=...)`` builds such a job without importing
the worker: every option given per job, ``queue`` required, job-feature options refused;
``insert`` / ``insert_all`` write it, unique jobs included. A path outside the prefixes fails
as before (a typo in a local worker stays an error). The setting is checked (E021). A real
``runjobs`` node that has the worker runs the job; one that lacks it fails the attempt with an
error naming the worker, and retries with backoff.
"""

import datetime
import sys

from django.contrib.auth.models import User
from django.test import SimpleTestCase, TestCase, TransactionTestCase, override_settings
from django.urls import reverse
from django.utils import timezone

import django_jobs
from django_jobs import fetch_recorded, insert, insert_all, new_job
from django_jobs.checks import check_settings
from django_jobs.exceptions import InvalidJobError, UnknownOptionError, WorkerNotImportable
from django_jobs.models import Job

from .helpers import describe_jobs, reload
from .processes import RunjobsMixin
from .settings import DJANGO_JOBS
from .waits import wait_until

#: The test settings, with two remote prefixes: a module that does not exist here, and the
#: module of tests/remote_workers.py (which only runjobs children import).
REMOTE = {**DJANGO_JOBS, "REMOTE_WORKERS": ["billing.workers", "tests.remote_workers"]}
INVOICE = "billing.workers.Invoice"
HERE = "tests.remote_workers.Invoice"


@override_settings(DJANGO_JOBS=REMOTE)
class BuildTests(SimpleTestCase):
    def test_new_job_builds_an_unsaved_job_without_importing_the_worker(self):
        job = new_job(HERE, {"amount": 12}, queue="billing", priority=3, max_attempts=4,
                      tags=["eu", " eu", "b2b"], meta={"source": "shop"})
        self.assertNotIn("tests.remote_workers", sys.modules)
        self.assertIsInstance(job, Job)
        self.assertIsNone(job.pk)
        self.assertEqual((job.worker, job.queue, job.args, job.meta, job.tags),
                         (HERE, "billing", {"amount": 12}, {"source": "shop"}, ["eu", "b2b"]))
        self.assertEqual((job.priority, job.max_attempts, job.state), (3, 4, "available"))
        self.assertIs(django_jobs.new_job, new_job)

    def test_defaults_are_the_worker_base_class_ones(self):
        job = new_job(INVOICE, queue="billing")
        self.assertEqual((job.args, job.meta, job.tags, job.priority, job.max_attempts),
                         ({}, {}, [], 0, 20))
        self.assertIsNone(job.unique_key)

    def test_schedule_in_and_scheduled_at(self):
        job = new_job(INVOICE, {}, queue="billing", schedule_in=(2, "minutes"))
        self.assertEqual(job.state, "scheduled")
        self.assertAlmostEqual((job.scheduled_at - timezone.now()).total_seconds(), 120,
                               delta=5)
        at = timezone.now() + datetime.timedelta(hours=1)
        self.assertEqual(new_job(INVOICE, queue="billing", scheduled_at=at).scheduled_at, at)

    def test_a_queue_is_required(self):
        with self.assertRaisesMessage(InvalidJobError, "a job of the remote worker "
                                      "billing.workers.Invoice needs queue=..."):
            new_job(INVOICE, {"amount": 1})

    def test_bad_options_and_args_are_refused(self):
        cases = {
            "priority must be an integer from 0": dict(priority=12),
            "max_attempts must be an integer from 1 to 32767": dict(max_attempts=0),
            "queue must be a non-empty string": dict(queue=" "),
            "scheduled_at must be timezone-aware": dict(scheduled_at=datetime.datetime(2030, 1,
                                                                                       1)),
            "args must be a dict": dict(args=[1]),
            "args is not JSON-serializable": dict(args={"at": object()}),
        }
        for message, options in cases.items():
            with self.subTest(message):
                options = {"queue": "billing", **options}
                args = options.pop("args", {})
                with self.assertRaises(InvalidJobError) as caught:
                    new_job(INVOICE, args, **options)
                self.assertIn(message.split(" is not")[0], str(caught.exception))

    def test_unknown_and_feature_options_are_refused_by_name(self):
        with self.assertRaisesMessage(UnknownOptionError, "did you mean 'priority'?"):
            new_job(INVOICE, queue="billing", priorty=1)
        with self.assertRaisesMessage(UnknownOptionError, "job option 'deadline' belongs to a "
                                      "job feature, and no job feature runs for the remote "
                                      "worker billing.workers.Invoice"):
            new_job(INVOICE, queue="billing", deadline=60)

    def test_a_path_outside_the_prefixes_fails_as_before(self):
        for path in ("billing.workersx.Invoice", "billing.Invoice", "tests.workers.NoSuch"):
            with self.subTest(path), self.assertRaisesMessage(
                    WorkerNotImportable, f"worker {path} cannot be imported"):
                new_job(path, {}, queue="billing")

    def test_without_the_setting_a_path_must_import(self):
        with override_settings(DJANGO_JOBS=DJANGO_JOBS), self.assertRaisesMessage(
                WorkerNotImportable, f"worker {INVOICE} cannot be imported"):
            new_job(INVOICE, {}, queue="billing")

    def test_a_path_that_cannot_name_a_worker_is_refused(self):
        with self.assertRaisesMessage(WorkerNotImportable, "dotted path of at most 255"):
            new_job("billing.workers." + "x" * 255, queue="billing")


@override_settings(DJANGO_JOBS=REMOTE)
class InsertTests(TestCase):
    def test_insert_and_insert_all_write_it(self):
        one = insert(new_job(INVOICE, {"n": 1}, queue="billing", tags=["a"]))
        more = insert_all([new_job(INVOICE, {"n": n}, queue="billing") for n in (2, 3)])
        rows = Job.objects.filter(worker=INVOICE).order_by("id")
        self.assertEqual([job.pk for job in rows], [one.pk, *(job.pk for job in more)])
        self.assertEqual([(job.args, job.queue, job.state) for job in rows],
                         [({"n": n}, "billing", "available") for n in (1, 2, 3)])
        self.assertEqual(rows[0].tags, ["a"])
        self.assertNotIn("tests.remote_workers", sys.modules)

    def test_unique_jobs(self):
        first = insert(new_job(INVOICE, {"n": 1}, queue="billing", unique={"period": 60}))
        again = insert(new_job(INVOICE, {"n": 1}, queue="billing", unique={"period": 60}))
        other = insert(new_job(INVOICE, {"n": 2}, queue="billing", unique={"period": 60}))
        self.assertTrue(again.conflict)
        self.assertEqual(again.pk, first.pk)
        self.assertNotEqual(other.pk, first.pk)
        self.assertEqual(Job.objects.filter(worker=INVOICE).count(), 2)

    def test_the_admin_shows_a_job_whose_worker_this_deployment_lacks(self):
        job = insert(new_job(INVOICE, {"order": 7}, queue="billing"))
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
        response = self.client.get(reverse("admin:django_jobs_job_change", args=[job.pk]))
        self.assertContains(response, INVOICE)
        self.assertContains(response, "&quot;order&quot;: 7")


class CheckTests(SimpleTestCase):
    def test_valid_prefixes(self):
        for value in ([], ["billing"], ["billing.workers", "a_b.c2"], ("x.y",)):
            with self.subTest(value), override_settings(
                    DJANGO_JOBS={"REMOTE_WORKERS": value}):
                self.assertEqual(check_settings(), [])

    def test_invalid_values_are_named(self):
        cases = [("billing.workers", "must be a list of dotted module prefixes"),
                 ({"billing": 1}, "must be a list of dotted module prefixes"),
                 (["billing."], "['REMOTE_WORKERS'][0] is 'billing.', not a dotted"),
                 (["ok", "bad path"], "['REMOTE_WORKERS'][1] is 'bad path'"),
                 (["ok", 3], "['REMOTE_WORKERS'][1] is 3"),
                 ([""], "['REMOTE_WORKERS'][0] is ''")]
        for value, message in cases:
            with self.subTest(value), override_settings(
                    DJANGO_JOBS={"REMOTE_WORKERS": value}):
                [error] = check_settings()
                self.assertEqual(error.id, "django_jobs.E021")
                self.assertIn(message, error.msg)
                self.assertIn('["billing.workers"]', error.hint)


@override_settings(DJANGO_JOBS=REMOTE)
class RunjobsTests(RunjobsMixin, TransactionTestCase):
    """A node of the deployment that has the worker runs its jobs; a node that lacks it
    retries them with backoff, naming the missing worker."""

    def test_a_node_runs_what_it_has_and_retries_what_it_lacks(self):
        served = insert(new_job(HERE, {"amount": 5}, queue="default", priority=2,
                                max_attempts=3, tags=["eu"]))
        lacking = insert(new_job(INVOICE, {"amount": 7}, queue="default", max_attempts=3))
        self.assertNotIn("tests.remote_workers", sys.modules)
        node = self.start_runjobs("remote", "--queue", "default=2")
        jobs = Job.objects.filter(pk__in=[served.pk, lacking.pk])
        wait_until(lambda: reload(served).state == "completed"
                   and reload(lacking).state == "retryable", 60,
                   what="the served job to complete and the lacking one to fail",
                   describe=lambda: self.runjobs_report(describe_jobs(jobs)))
        self.assertTrue(node.alive(), self.runjobs_report("the node died"))
        self.stop_runjobs(node, within=30)

        self.assertEqual(fetch_recorded(reload(served)), {
            "args": {"amount": 5}, "queue": "default", "priority": 2, "max_attempts": 3,
            "tags": ["eu"]})
        failed = reload(lacking)
        self.assertEqual((failed.attempt, len(failed.errors)), (1, 1))
        self.assertIn("worker billing.workers.Invoice cannot be imported",
                      failed.errors[0]["error"])
        # Oban's backoff after a first failure: 15 + 2 s, plus up to 10 %.
        wait = (failed.scheduled_at - failed.attempted_at).total_seconds()
        self.assertGreater(wait, 15)
        self.assertLess(wait, 25)
