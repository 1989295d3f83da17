"""Rows that no API writes, next to plain jobs, run by a real ``runjobs`` node: whatever a row
holds, the other jobs' outcomes are written, the odd row's attempt fails with an error naming
the cause (and is retried like any failure), and nothing stays ``executing``."""

from __future__ import annotations

import json

from django.db import connection
from django.db.models.signals import post_init
from django.test import TransactionTestCase
from django.utils import timezone

from django_jobs import insert_all
from django_jobs.engines import get_engine
from django_jobs.outcome import Outcome
from django_jobs.runtime.acker import Acker
from django_jobs.signals import state_changed
from django_jobs.engines.rows import UNREADABLE, jobs_from_rows
from django_jobs.exceptions import WorkerNotImportable
from django_jobs.execution.executor import execute
from django_jobs.execution.interrupt import Running
from django_jobs.models import Job, JobState
from django_jobs.registry import resolve_worker

from .pro_workers import QUEUE, PlainWorker, SealedWorker
from .processes import RunjobsMixin
from .waits import wait_until

#: A node's wait for jobs it should run at once, on a loaded machine.
TIMEOUT = 60.0


class BrokenModuleTests(TransactionTestCase):
    def test_a_module_raising_on_import_is_a_worker_that_cannot_be_imported(self):
        with self.assertRaisesMessage(WorkerNotImportable,
                                      "its module raised RuntimeError: BILLING_API_KEY"):
            resolve_worker("tests.broken_worker_module.Invoice")


class UnreadableRowTests(TransactionTestCase):
    """A value the database hands back that cannot be decoded (neither database lets the
    jobs table hold one through its constraints, but a fetch must not trust that): the row
    still becomes a job, and its attempt fails naming the column."""

    def fetched_row(self) -> tuple[tuple[str, ...], list]:
        PlainWorker.enqueue({"n": 1})
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM django_jobs_job")
            names = tuple(column[0] for column in cursor.description)
            row = list(cursor.fetchone())
        return names, row

    def test_the_row_becomes_a_job_whose_attempt_fails_naming_the_column(self):
        names, row = self.fetched_row()
        row[names.index("args")] = "{not json"
        [job] = jobs_from_rows(connection.alias, names, [row])
        self.assertEqual(job.args, {})
        self.assertEqual(len(getattr(job, UNREADABLE)), 1)
        self.assertTrue(getattr(job, UNREADABLE)[0].startswith("args: JSONDecodeError"))
        job.attempt = 1
        outcome, _ = execute(Running(job), reset=False)
        self.assertEqual(outcome.state, JobState.RETRYABLE)
        self.assertIn("The job's row could not be read: args: JSONDecodeError",
                      outcome.changes["errors"][-1]["error"])

    def test_a_decoded_job_is_the_job_the_orm_reads(self):
        names, row = self.fetched_row()
        [job] = jobs_from_rows(connection.alias, names, [row])
        orm = Job.objects.get(pk=job.pk)
        for field in Job._meta.concrete_fields:
            self.assertEqual(getattr(job, field.attname), getattr(orm, field.attname),
                             field.attname)
        self.assertEqual((job._state.adding, job._state.db), (False, connection.alias))

    def test_a_project_listening_to_post_init_still_hears_fetched_jobs(self):
        names, row = self.fetched_row()
        heard = []

        def receiver(sender, instance, **kwargs):
            heard.append(instance)

        post_init.connect(receiver, sender=Job)
        self.addCleanup(post_init.disconnect, receiver, sender=Job)
        [job] = jobs_from_rows(connection.alias, names, [row])
        self.assertEqual(heard, [job])

    def test_readable_rows_beside_it_decode_as_usual(self):
        names, row = self.fetched_row()
        bad = list(row)
        bad[names.index("meta")] = "[1, 2"
        good, broken = sorted(jobs_from_rows(connection.alias, names, [row, bad]),
                              key=lambda job: hasattr(job, UNREADABLE))
        self.assertEqual(good.args, {"n": 1})
        self.assertFalse(hasattr(good, UNREADABLE))
        self.assertEqual(broken.meta, {})


class PoisonRowsTests(RunjobsMixin, TransactionTestCase):
    def odd_rows(self) -> dict[str, int]:
        """One job per kind of odd row, each made from a plain job by a direct write."""
        jobs = insert_all([PlainWorker.new({"odd": i}) for i in range(4)]
                          + [SealedWorker.new({"secret": "s3cret"})])
        module, missing, sealed = jobs[0].pk, jobs[1].pk, jobs[4].pk
        Job.objects.filter(pk=module).update(worker="tests.broken_worker_module.Invoice")
        Job.objects.filter(pk=missing).update(worker="tests.no_such_module.Worker")
        args = Job.objects.get(pk=sealed).args
        args["encrypted"]["data"] = "bm90IGEgc2VhbGVkIGJsb2I="  # base64 of garbage
        Job.objects.filter(pk=sealed).update(args=args)
        return {"module raises": module, "no module": missing, "sealed blob": sealed}

    def test_odd_rows_fail_alone_and_never_stop_the_queue(self):
        odd = self.odd_rows()
        plain = [job.pk for job in insert_all(PlainWorker.new({"n": i}) for i in range(20))]
        node = self.start_runjobs("poison", "--queue", f"{QUEUE}=5")

        def settled() -> bool:
            done = Job.objects.filter(pk__in=plain, state=JobState.COMPLETED).count()
            failed = Job.objects.filter(pk__in=odd.values(), state=JobState.RETRYABLE).count()
            return done == len(plain) and failed == len(odd)

        wait_until(settled, TIMEOUT, what="plain jobs completed and odd rows retryable",
                   describe=lambda: self.runjobs_report(json.dumps(
                       dict(Job.objects.values_list("pk", "state")), indent=None)))
        self.assertFalse(Job.objects.filter(state=JobState.EXECUTING).exists())
        errors = {kind: Job.objects.get(pk=pk).errors for kind, pk in odd.items()}
        for kind, entries in errors.items():
            self.assertEqual(len(entries), 1, kind)
            self.assertEqual(entries[0]["attempt"], 1, kind)
        self.assertIn("RuntimeError: BILLING_API_KEY is missing", errors["module raises"][0]
                      ["error"])
        self.assertIn("tests.no_such_module.Worker cannot be imported",
                      errors["no module"][0]["error"])
        self.assertIn("decrypt", errors["sealed blob"][0]["error"].lower())
        # Retried with backoff, as any failure: a deploy may fix it.
        for pk in odd.values():
            self.assertGreater(Job.objects.get(pk=pk).scheduled_at,
                               Job.objects.get(pk=pk).attempted_at)
        # And the node is still running jobs.
        later = PlainWorker.enqueue({"after": True})
        wait_until(lambda: Job.objects.get(pk=later.pk).state == JobState.COMPLETED, TIMEOUT,
                   what="a job inserted after the odd rows completed",
                   describe=lambda: self.runjobs_report(""))
        self.assertTrue(node.alive)


class OutOfAttemptsTests(TransactionTestCase):
    def test_an_available_job_out_of_attempts_gets_one_more_and_blocks_no_fetch(self):
        jobs = insert_all([PlainWorker.new({"n": i}, max_attempts=3) for i in range(3)])
        # No API leaves a job available with every attempt spent; a fetch must not fail on it
        # (the attempt check would refuse attempt 4 of 3, and the whole claim with it).
        Job.objects.filter(pk=jobs[0].pk).update(attempt=3)
        fetched = get_engine().fetch_jobs(QUEUE, 10, ["test", "fetch"], timezone.now())
        self.assertEqual(sorted(job.pk for job in fetched), sorted(job.pk for job in jobs))
        odd = Job.objects.get(pk=jobs[0].pk)
        self.assertEqual((odd.attempt, odd.max_attempts), (4, 4))


class AckerIsolationTests(TransactionTestCase):
    """An outcome that cannot be written (here a state_changed receiver refuses one job's
    change, as a feature's ``acked`` might on what its row holds) holds back no other."""

    def test_the_others_are_written_and_the_odd_one_is_retried_apart(self):
        jobs = insert_all([PlainWorker.new({"n": i}) for i in range(4)])
        fetched = get_engine().fetch_jobs(QUEUE, 4, ["test", "acker"], timezone.now())
        poison = fetched[1].pk
        refusing = {"on": True}

        def receiver(sender, changes, **kwargs):
            if refusing["on"] and any(change.id == poison for change in changes):
                raise RuntimeError("this job's change cannot be written")

        state_changed.connect(receiver)
        self.addCleanup(state_changed.disconnect, receiver)
        acker = Acker(get_engine())
        acker.start()
        self.addCleanup(acker.stop, 10)
        now = timezone.now()
        for job in fetched:
            acker.push(Outcome(job.pk, JobState.COMPLETED, now, job=job))
        others = [job.pk for job in jobs if job.pk != poison]
        wait_until(lambda: Job.objects.filter(pk__in=others,
                                              state=JobState.COMPLETED).count() == 3,
                   TIMEOUT, what="the other outcomes written")
        self.assertEqual(Job.objects.get(pk=poison).state, JobState.EXECUTING)
        refusing["on"] = False  # the cause goes away (a deploy): the held outcome is written
        wait_until(lambda: Job.objects.get(pk=poison).state == JobState.COMPLETED, TIMEOUT,
                   what="the held outcome written once it can be")
