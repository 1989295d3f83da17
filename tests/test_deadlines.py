"""Deadlines (django_jobs/pro/deadline.py): a job that must not run late is cancelled instead.

* the forms of the option, the per-job override (only for workers that declare a deadline);
* the deadline is fixed at build, from the scheduled time, and retries and snoozes never move
  it;
* a job fetched after its deadline is cancelled without running, the reason in its errors; one
  inserted before its worker had a deadline runs as before;
* ``force``: a job still running at its deadline is stopped and cancelled by the watchdog of a
  node (a ``runjobs`` child, and a node in this process); ``drain_queue`` and ``perform_job``
  do not interrupt;
* a chained job whose deadline passed while it waited is cancelled when its turn comes, and
  its chain goes on or holds.

Jobs record their moments in the raw table ``chain_effect`` (tests/chain_workers.py), so what
ran, and how far, is read back from the database.
"""

import datetime
import gc

from django.test import SimpleTestCase, TestCase, TransactionTestCase
from django.utils import timezone

import django_jobs
from django_jobs.exceptions import ConfigurationError, InvalidJobError, UnknownOptionError
from django_jobs.models import Job, JobState
from django_jobs.pro.deadline import DeadlineSpec, parse_deadline
from django_jobs.runtime import node as node_module
from django_jobs.testing import drain_queue, perform_job

from . import chain_workers as w
from .helpers import describe_jobs, reload
from .processes import RunjobsMixin
from .test_chains import EffectTable, states
from .waits import time_limit, wait_until
from .workers import UniqueWorker

QUEUE = w.QUEUE
COMPLETED, CANCELLED = JobState.COMPLETED, JobState.CANCELLED
#: Every wait on a node, for a loaded machine.
SLACK = 60.0


def deadline_of(job) -> datetime.datetime:
    return datetime.datetime.fromisoformat(job.meta["deadline_at"])


class DeadlineOptionTests(SimpleTestCase):
    """The option's forms, where it may be given, and the instant it fixes (nothing is
    written)."""

    def test_forms(self):
        cases = [
            (60, DeadlineSpec(60.0)),
            (1.5, DeadlineSpec(1.5)),
            (0, DeadlineSpec(0.0)),
            (datetime.timedelta(minutes=2), DeadlineSpec(120.0)),
            ((2, "hours"), DeadlineSpec(7200.0)),
            ((1, "minute"), DeadlineSpec(60.0)),
            ((3, "days"), DeadlineSpec(3 * 86400.0)),
            ((1, "week"), DeadlineSpec(7 * 86400.0)),
            ((30, "seconds"), DeadlineSpec(30.0)),
            ({"in": 30}, DeadlineSpec(30.0)),
            ({"in": (1, "hour"), "force": True}, DeadlineSpec(3600.0, True)),
            ({"in": datetime.timedelta(seconds=5), "force": False}, DeadlineSpec(5.0)),
        ]
        for value, spec in cases:
            with self.subTest(value=value):
                self.assertEqual(parse_deadline(value), spec)

    BAD = [-1, "soon", None, [60], (1, "fortnight"), ("1", "hour"), True, float("inf"),
           {"force": True}, {"in": 60, "force": "yes"}, {"in": 60, "at": 1}, {"in": "soon"},
           {"in": -5, "force": True}]

    def test_bad_forms_are_refused(self):
        for value in self.BAD:
            with self.subTest(value=value), self.assertRaises(InvalidJobError):
                parse_deadline(value)

    def test_a_bad_class_deadline_fails_at_class_definition(self):
        for value in self.BAD:
            if value is None:
                continue  # no deadline at all
            with self.subTest(value=value), self.assertRaisesRegex(ConfigurationError,
                                                                   r"BadDeadline: .*deadline"):
                class BadDeadline(django_jobs.Worker):
                    deadline = value

                    def perform(self, job):
                        return None

    def test_fixed_from_the_scheduled_time(self):
        # Scheduled in an hour with a one hour deadline: expires in two hours.
        before = timezone.now()
        job = w.HourDeadline.new({}, schedule_in=3600)
        self.assertEqual(deadline_of(job), job.scheduled_at + datetime.timedelta(hours=1))
        self.assertGreaterEqual(deadline_of(job), before + datetime.timedelta(hours=2))
        self.assertLess(deadline_of(job), timezone.now() + datetime.timedelta(hours=2))
        at = timezone.now() + datetime.timedelta(days=3)
        self.assertEqual(deadline_of(w.HourDeadline.new({}, scheduled_at=at)),
                         at + datetime.timedelta(hours=1))
        due_now = w.HourDeadline.new({})
        self.assertEqual(deadline_of(due_now), due_now.scheduled_at + datetime.timedelta(hours=1))
        self.assertNotIn("deadline_force", due_now.meta)

    def test_the_per_job_deadline_overrides_the_class_one(self):
        at = timezone.now() + datetime.timedelta(minutes=10)
        job = w.HourDeadline.new({}, scheduled_at=at, deadline=(30, "minutes"))
        self.assertEqual(deadline_of(job), at + datetime.timedelta(minutes=30))
        forced = w.ShortDeadline.new({}, scheduled_at=at, deadline={"in": 5, "force": True})
        self.assertEqual(deadline_of(forced), at + datetime.timedelta(seconds=5))
        self.assertIs(forced.meta["deadline_force"], True)
        self.assertIs(w.ForcedDeadline.new({}).meta["deadline_force"], True)
        with self.assertRaises(InvalidJobError):
            w.ShortDeadline.new({}, deadline="soon")

    def test_the_per_job_deadline_needs_a_class_deadline(self):
        for worker in (w.AccountWebhook, w.NotChained, UniqueWorker):
            with self.subTest(worker=worker.__name__), self.assertRaisesRegex(
                    UnknownOptionError, r"'deadline' belongs to the deadline feature"):
                worker.new({"account": 1}, deadline=60)


class DeadlineRunTests(EffectTable, TestCase):
    """What a deadline does to a job that is run, through drain_queue (the executor and acks
    of runjobs, in this thread)."""

    def test_a_job_fetched_after_its_deadline_is_cancelled_without_running(self):
        late = w.ShortDeadline.enqueue({"seq": 1},
                                       scheduled_at=timezone.now() - datetime.timedelta(minutes=2))
        expired = w.ShortDeadline.enqueue({"seq": 2}, deadline=0)
        in_time = w.ShortDeadline.enqueue({"seq": 3})
        self.assertEqual(drain_queue(QUEUE), {"completed": 1, "failed": 0, "discarded": 0,
                                              "cancelled": 2, "snoozed": 0})
        self.assertEqual(states([late, expired, in_time]), [CANCELLED, CANCELLED, COMPLETED])
        self.assertEqual(self.started(), [in_time.pk], "a job past its deadline ran")
        for job in (late, expired):
            fresh = reload(job)
            self.assertIsNotNone(fresh.cancelled_at)
            self.assertEqual(len(fresh.errors), 1)
            self.assertIn(f"deadline passed at {deadline_of(fresh).isoformat()} before the job "
                          f"started", fresh.errors[0]["error"])

    def test_retries_do_not_move_it(self):
        job = w.ShortDeadline.enqueue({"fail": True}, deadline=(1, "hour"))
        fixed = job.meta["deadline_at"]
        drain_queue(QUEUE)
        self.assertEqual(reload(job).state, JobState.RETRYABLE)
        self.assertEqual(reload(job).meta["deadline_at"], fixed)
        drain_queue(QUEUE, with_scheduled=True)
        fresh = reload(job)
        self.assertEqual((fresh.state, fresh.attempt, fresh.meta["deadline_at"]),
                         (COMPLETED, 2, fixed))

    def test_snoozes_do_not_move_it(self):
        job = w.ShortDeadline.enqueue({"snooze": True}, deadline=(1, "hour"))
        fixed = job.meta["deadline_at"]
        drain_queue(QUEUE)
        fresh = reload(job)
        self.assertEqual((fresh.state, fresh.meta["deadline_at"]), (JobState.SCHEDULED, fixed))
        self.assertGreater(fresh.scheduled_at, job.scheduled_at)
        drain_queue(QUEUE, with_scheduled=True)
        fresh = reload(job)
        self.assertEqual((fresh.state, fresh.meta["deadline_at"]), (COMPLETED, fixed))

    def past_deadline(self, job) -> None:
        """Move ``job``'s fixed deadline a minute into the past, as if its time had passed."""
        meta = dict(reload(job).meta)
        meta["deadline_at"] = (timezone.now() - datetime.timedelta(minutes=1)).isoformat()
        Job.objects.filter(pk=job.pk).update(meta=meta)

    def test_a_retry_after_the_deadline_is_cancelled(self):
        job = w.ShortDeadline.enqueue({"fail": True})
        drain_queue(QUEUE)
        self.assertEqual(reload(job).state, JobState.RETRYABLE)
        self.past_deadline(job)
        drain_queue(QUEUE, with_scheduled=True)
        fresh = reload(job)
        self.assertEqual(fresh.state, CANCELLED)
        self.assertEqual([e for _, e in self.events()], ["start", "fail"])
        self.assertIn("deadline passed", fresh.errors[-1]["error"])

    def test_a_snoozed_job_woken_after_the_deadline_is_cancelled(self):
        job = w.ShortDeadline.enqueue({"snooze": True})
        drain_queue(QUEUE)
        self.assertEqual(reload(job).state, JobState.SCHEDULED)
        self.past_deadline(job)
        drain_queue(QUEUE, with_scheduled=True)
        self.assertEqual(reload(job).state, CANCELLED)
        self.assertEqual([e for _, e in self.events()], ["start", "snooze"])

    def test_a_job_without_deadline_meta_runs_as_before(self):
        # Inserted before the worker had a deadline: no deadline_at, however old the job.
        job = w.ShortDeadline.enqueue({"seq": 1},
                                      scheduled_at=timezone.now() - datetime.timedelta(days=1))
        Job.objects.filter(pk=job.pk).update(meta={})
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        self.assertEqual(states([job]), [COMPLETED])
        self.assertEqual(self.events(), [(job.pk, "start"), (job.pk, "end")])

    def test_drain_queue_and_perform_job_do_not_interrupt(self):
        # Documented: the watchdog is runjobs'. A forced deadline passing while the job runs
        # in drain_queue or perform_job does not stop it.
        job = w.ForcedDeadline.enqueue({"sleep": 0.4}, deadline={"in": 0.2, "force": True})
        drain_queue(QUEUE)
        self.assertEqual(states([job]), [COMPLETED])
        self.assertIsNone(perform_job(w.ForcedDeadline, {"sleep": 0.4},
                                      deadline={"in": 0.2, "force": True}))
        self.assertEqual([e for _, e in self.events()], ["start", "end", "start", "end"])


class DeadlineChainTests(EffectTable, TestCase):
    """A chained job whose deadline passes while it waits is cancelled when its turn comes;
    its chain goes on (on_cancelled="ignore") or holds ("hold")."""

    def chain(self, worker, account: str) -> list[Job]:
        jobs = [worker.enqueue({"account": account, "seq": n}) for n in range(3)]
        self.assertEqual(states(jobs), [JobState.AVAILABLE, JobState.SUSPENDED,
                                        JobState.SUSPENDED])
        meta = dict(jobs[1].meta,
                    deadline_at=(timezone.now() - datetime.timedelta(minutes=1)).isoformat())
        Job.objects.filter(pk=jobs[1].pk).update(meta=meta)  # its time passed while waiting
        return jobs

    def test_ignore_the_chain_goes_on(self):
        jobs = self.chain(w.DeadlineChain, "deadline-ignore")
        drain_queue(QUEUE, with_recursion=True)
        self.assertEqual(states(jobs), [COMPLETED, CANCELLED, COMPLETED])
        self.assertEqual(self.started(), [jobs[0].pk, jobs[2].pk])
        self.assertIn("deadline passed", reload(jobs[1]).errors[-1]["error"])

    def test_hold_the_chain_waits(self):
        jobs = self.chain(w.HoldingDeadlineChain, "deadline-hold")
        drain_queue(QUEUE, with_recursion=True)
        self.assertEqual(states(jobs), [COMPLETED, CANCELLED, JobState.SUSPENDED])
        self.assertEqual(self.started(), [jobs[0].pk])


# -- force: the watchdog of a node --------------------------------------------------------------


class ForceTests(EffectTable):
    """The same scenario for a runjobs child and a node in this process: a forced job stopped
    at its deadline, one blocked in C stopped when its call returns, an unforced one left to
    finish, and one already late cancelled before it starts."""

    def insert_scenario(self) -> dict[str, Job]:
        return {
            # Would run 30 s; its forced deadline passes after 1 s.
            "forced": w.ForcedDeadline.enqueue({"seq": 1, "sleep": 30},
                                               deadline={"in": 1, "force": True}),
            # Blocked 3 s in time.sleep: stopped when the call returns.
            "blocked": w.BlockedDeadline.enqueue({"seq": 2, "sleep": 3},
                                                 deadline={"in": 1, "force": True}),
            # Not forced: runs past its deadline to the end.
            "unforced": w.ShortDeadline.enqueue({"seq": 3, "sleep": 1.5}, deadline=1),
            # Late already: never starts.
            "late": w.ForcedDeadline.enqueue({"seq": 4, "sleep": 30}, deadline=0),
        }

    def wait_settled(self, jobs: dict[str, Job]) -> None:
        queryset = Job.objects.filter(pk__in=[job.pk for job in jobs.values()])
        wait_until(lambda: not queryset.exclude(state__in=[COMPLETED, CANCELLED]).exists(),
                   SLACK, what="the deadline jobs to finish", interval=0.1,
                   describe=lambda: self.describe(queryset))

    def describe(self, queryset) -> str:
        return describe_jobs(queryset)

    def assertScenario(self, jobs: dict[str, Job]) -> None:
        fresh = {name: reload(job) for name, job in jobs.items()}
        self.assertEqual({name: job.state for name, job in fresh.items()},
                         {"forced": CANCELLED, "blocked": CANCELLED, "unforced": COMPLETED,
                          "late": CANCELLED})
        moments = {name: [e for pk, e in self.events() if pk == job.pk]
                   for name, job in jobs.items()}
        self.assertEqual(moments, {"forced": ["start"], "blocked": ["start"],
                                   "unforced": ["start", "end"], "late": []})
        for name in ("forced", "blocked"):
            job = fresh[name]
            self.assertIn(f"deadline passed at {deadline_of(job).isoformat()} while the job was "
                          f"executing", job.errors[-1]["error"], job.errors)
            # Cancelled when the deadline passed, not before.
            self.assertGreaterEqual(job.cancelled_at, deadline_of(job))
        self.assertIn("before the job started", fresh["late"].errors[-1]["error"])


class RunjobsForceTests(ForceTests, RunjobsMixin, TransactionTestCase):
    def describe(self, queryset) -> str:
        return self.runjobs_report(describe_jobs(queryset))

    def test_force_in_a_runjobs_child(self):
        node = self.start_runjobs("deadlines", "--queue", f"{QUEUE}=4")
        jobs = self.insert_scenario()
        self.wait_settled(jobs)
        self.assertScenario(jobs)
        self.stop_runjobs(node, within=SLACK)


class NodeForceTests(ForceTests, TransactionTestCase):
    def test_force_in_a_node_in_this_process(self):
        node = node_module.Node(queues={QUEUE: 4}, name="deadline-node", plugins=False,
                                grace=2.0)
        node.start()
        self.addCleanup(self.stop_node, node)
        jobs = self.insert_scenario()
        self.wait_settled(jobs)
        self.assertScenario(jobs)

    @staticmethod
    def stop_node(node) -> None:
        with time_limit(SLACK, f"node {node.name} to stop"):
            node.stop()
        # Let the pool threads' connections go now (PostgreSQL refuses to drop the test
        # database while they are open).
        gc.collect()

