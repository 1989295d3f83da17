"""The django.tasks backend (django_jobs/tasks.py): Django's ``@task`` functions enqueued as jobs,
run by the executor (``drain_queue``) and by real ``runjobs`` children, read back with
``get_result``.

Runs with Django 6's ``django.tasks`` or the django-tasks backport on Django 5.2; skipped when
neither is installed (tests/settings.py then sets no TASKS). The task functions are in
tests/task_functions.py.
"""

import datetime
import math
import unittest

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from django_jobs import control
from django_jobs.engines import get_engine
from django_jobs.models import Job
from django_jobs.testing import JobsTestMixin, with_testing_mode

from .processes import RunjobsMixin
from .waits import wait_until
from .workers import NoopWorker

try:
    from django_jobs import tasks as jobs_tasks
except ImportError:  # neither django.tasks nor django_tasks: every test here skips
    jobs_tasks = None
else:
    from . import task_functions as tf

    if jobs_tasks.TaskResult.__module__.startswith("django.tasks"):
        from django.tasks.exceptions import TaskResultMismatch
        from django.tasks.signals import task_enqueued, task_finished, task_started
    else:
        from django_tasks.exceptions import TaskResultMismatch
        from django_tasks.signals import task_enqueued, task_finished, task_started

#: The logger of Django's own task signal receivers (the backport's is django_tasks).
TASKS_LOGGER = "django_tasks" if jobs_tasks and not jobs_tasks.TaskResult.__module__.startswith(
    "django.tasks") else "django.tasks"
needs_tasks = unittest.skipUnless(jobs_tasks, "neither django.tasks nor django_tasks is installed")
TASK_WORKER = "django_jobs.tasks.TaskWorker"
ASYNC_TASK_WORKER = "django_jobs.tasks.AsyncTaskWorker"


def job_of(result) -> Job:
    return Job.objects.get(pk=int(result.id))


class Signals:
    """Collects what the task signals send, while connected."""

    def __init__(self, test):
        self.sent = []
        for name, signal in (("enqueued", task_enqueued), ("started", task_started),
                             ("finished", task_finished)):
            receiver = self._receiver(name)
            signal.connect(receiver, weak=False)
            test.addCleanup(signal.disconnect, receiver)

    def _receiver(self, name):
        def receive(sender, task_result, **kwargs):
            self.sent.append((name, sender, task_result.id, task_result.status,
                              task_result))
        return receive

    def of(self, name):
        return [(id_, status) for kind, _, id_, status, _ in self.sent if kind == name]


@needs_tasks
class EnqueueTests(TestCase):
    def test_enqueue_writes_a_job_that_names_the_task(self):
        result = tf.add.enqueue(2, 3)
        job = job_of(result)
        self.assertEqual(job.worker, TASK_WORKER)
        self.assertEqual(job.args, {"task": "tests.task_functions.add", "args": [2, 3],
                                    "kwargs": {}})
        self.assertEqual(job.meta["task"], "tests.task_functions.add")
        self.assertEqual(job.meta["task_info"]["backend"], "default")
        self.assertEqual((job.queue, job.priority, job.state), ("default", 4, "available"))
        self.assertEqual(job.max_attempts, 3)  # OPTIONS of tests/settings.py
        self.assertEqual(result.id, str(job.pk))
        self.assertEqual(result.status, jobs_tasks.TaskResultStatus.READY)
        self.assertEqual(result.enqueued_at, job.inserted_at)
        self.assertIsNone(result.started_at)
        self.assertIsNone(result.finished_at)
        self.assertEqual((result.args, result.kwargs), ([2, 3], {}))
        self.assertEqual((result.errors, result.worker_ids, result.attempts), ([], [], 0))
        self.assertEqual(result.backend, "default")
        self.assertIs(result.task.func, tf.add.func)
        with self.assertRaisesMessage(ValueError, "Task has not finished yet"):
            _ = result.return_value

    def test_enqueue_joins_the_callers_transaction(self):
        with self.assertRaises(RuntimeError):
            with transaction.atomic():
                User.objects.create(username="rolled-back")
                tf.add.enqueue(1, 1)
                raise RuntimeError("roll back")
        self.assertFalse(Job.objects.exists())
        with transaction.atomic():
            user = User.objects.create(username="kept")
            result = tf.add.enqueue(user.pk, 1)
        self.assertEqual(job_of(result).args["args"], [user.pk, 1])

    def test_async_task_runs_on_the_async_worker(self):
        self.assertEqual(job_of(tf.async_add.enqueue(1, 2)).worker, ASYNC_TASK_WORKER)

    def test_aenqueue_and_aget_result_from_a_coroutine(self):
        async def scenario():
            result = await tf.add.aenqueue(4, 5)
            return result, await tf.add.aget_result(result.id)

        # (async_to_sync, as an ASGI request: the ORM calls come back to this thread.)
        result, fetched = async_to_sync(scenario)()
        self.assertEqual(job_of(result).args["args"], [4, 5])
        self.assertEqual((fetched.id, fetched.status, fetched.args), (result.id, "READY", [4, 5]))

    def test_priorities_map_onto_job_priorities_higher_first(self):
        expected = {100: 0, 80: 0, 79: 1, 60: 1, 59: 2, 40: 2, 20: 3, 19: 4, 0: 4, -1: 5,
                    -20: 5, -21: 6, -41: 7, -61: 8, -80: 8, -81: 9, -100: 9}
        self.assertEqual({p: jobs_tasks.job_priority(p) for p in expected}, expected)
        mapped = [jobs_tasks.job_priority(p) for p in range(-100, 101)]
        self.assertEqual(mapped, sorted(mapped, reverse=True))  # never inverts an order
        self.assertEqual(set(mapped), set(range(10)))
        urgent, whenever = tf.urgent.enqueue(1), tf.whenever.enqueue(1)
        self.assertEqual((job_of(urgent).priority, job_of(urgent).queue), (0, "mailers"))
        self.assertEqual(job_of(whenever).priority, 9)
        using = tf.add.using(priority=30).enqueue(1, 1)
        self.assertEqual(job_of(using).priority, 3)
        self.assertEqual(tf.add.get_result(using.id).task.priority, 30)  # Django's, kept

    def test_run_after_schedules_the_job(self):
        later = timezone.now() + datetime.timedelta(hours=1)
        result = tf.add.using(run_after=later).enqueue(1, 1)
        job = job_of(result)
        self.assertEqual((job.state, job.scheduled_at), ("scheduled", later))
        self.assertEqual(result.task.run_after, later)
        self.assertEqual(tf.add.get_result(result.id).task.run_after, later)
        past = tf.add.using(run_after=timezone.now() - datetime.timedelta(hours=1)).enqueue(1, 1)
        self.assertEqual(job_of(past).state, "available")

    def test_arguments_go_through_a_json_round_trip(self):
        result = tf.echo.enqueue((1, 2), b"bytes", {"nested": (3, {"k": None})}, flag=True,
                                 ratio=0.5)
        expected_args = [[1, 2], "bytes", {"nested": [3, {"k": None}]}]
        self.assertEqual(result.args, expected_args)
        self.assertEqual(result.kwargs, {"flag": True, "ratio": 0.5})
        self.assertEqual(job_of(result).args["args"], expected_args)

    def test_arguments_json_cannot_hold_raise_djangos_error_and_write_nothing(self):
        for args in [({1, 2},), (object(),), (datetime.date(2025, 1, 1),)]:
            with self.subTest(args=args), self.assertRaisesMessage(TypeError,
                                                                   "Unsupported type"):
                tf.echo.enqueue(*args)
        with self.assertRaisesMessage(TypeError, "Unsupported type"):
            tf.echo.enqueue(when=timezone.now())
        with self.assertRaises(ValueError):  # JSON has no NaN
            tf.echo.enqueue(math.nan)
        self.assertFalse(Job.objects.exists())

    def test_capabilities(self):
        backend = tf.add.get_backend()
        self.assertIsInstance(backend, jobs_tasks.JobsBackend)
        for flag in ("supports_defer", "supports_async_task", "supports_get_result",
                     "supports_priority"):
            self.assertIs(getattr(backend, flag), True, flag)

    def test_options_of_the_backend_and_of_each_task(self):
        self.assertEqual(job_of(tf.add.enqueue(1, 1)).max_attempts, 3)
        failing = job_of(tf.always_fails.enqueue("x"))
        self.assertEqual(failing.max_attempts, 2)
        self.assertEqual(failing.meta["task_info"]["backoff"], 0.2)
        self.assertEqual(job_of(tf.unique_ping.enqueue(1)).tags, ["once"])
        self.assertEqual(job_of(tf.sleeps.enqueue(1)).meta["task_info"]["timeout"], 0.5)

    def test_unique_task_returns_the_existing_result(self):
        signals = Signals(self)
        first = tf.unique_ping.enqueue(7)
        again = tf.unique_ping.enqueue(7)
        other = tf.unique_ping.enqueue(8)
        self.assertEqual(again.id, first.id)
        self.assertNotEqual(other.id, first.id)
        self.assertEqual(Job.objects.count(), 2)
        self.assertEqual(signals.of("enqueued"), [(first.id, "READY"), (other.id, "READY")])

    def test_task_enqueued_signal(self):
        signals = Signals(self)
        result = tf.add.enqueue(1, 2)
        [(name, sender, id_, status, sent)] = signals.sent
        self.assertEqual((name, sender, id_, status), ("enqueued", jobs_tasks.JobsBackend,
                                                       result.id, "READY"))
        self.assertEqual(sent.args, [1, 2])


@needs_tasks
class ValidationTests(TestCase):
    def test_queue_outside_the_backends_queues(self):
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "Queue 'reports' is not valid"):
            tf.add.using(queue_name="reports")

    def test_priority_out_of_range(self):
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "priority must be a whole number"):
            tf.add.using(priority=101)

    def test_naive_run_after(self):
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "run_after must be an aware"):
            tf.add.using(run_after=datetime.datetime(2030, 1, 1))

    def test_functions_not_at_module_level(self):
        def inner():
            pass

        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "module level"):
            tf.task(inner)

    def test_context_argument_required(self):
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "first argument of 'context'"):
            tf.task(takes_context=True)(tf.add.func)

    def test_queue_names_django_jobs_refuses(self):
        with override_settings(TASKS={"default": {"BACKEND": "django_jobs.tasks.JobsBackend",
                                                  "QUEUES": []}}):
            with self.assertRaisesMessage(jobs_tasks.InvalidTask, "queue name is 200"):
                tf.add.using(queue_name="q" * 200)
            with self.assertRaisesMessage(jobs_tasks.InvalidTask, "non-empty string"):
                tf.add.using(queue_name=" padded ")

    def test_task_options(self):
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "did you mean 'max_attempts'?"):
            jobs_tasks.task_options(max_attempt=3)
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "max_attempts must be"):
            jobs_tasks.task_options(max_attempts=0)
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "timeout must be more than 0"):
            jobs_tasks.task_options(timeout=0)
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "result_limit must be"):
            jobs_tasks.task_options(result_limit=True)
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "unique must compare the task"):
            jobs_tasks.task_options(unique={"fields": ["worker", "queue"]})
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "below @task"):
            jobs_tasks.task_options(max_attempts=3)(tf.add)

    def test_queues_that_runjobs_does_not_run_are_reported(self):
        self.assertEqual(tf.add.get_backend().check(), [])
        settings = {"default": {"BACKEND": "django_jobs.tasks.JobsBackend",
                                "QUEUES": ["default", "reports"]}}
        with override_settings(TASKS=settings):
            [warning] = tf.add.get_backend().check()
        self.assertEqual(warning.id, "django_jobs.W101")
        self.assertIn("lists 'reports', which DJANGO_JOBS['QUEUES'] does not run", warning.msg)

    def test_backend_options(self):
        settings = {"default": {"BACKEND": "django_jobs.tasks.JobsBackend",
                                "OPTIONS": {"max_atempts": 3}}}
        with override_settings(TASKS=settings):
            with self.assertRaisesMessage(jobs_tasks.InvalidTaskBackend,
                                          "did you mean 'max_attempts'?"):
                tf.add.get_backend()


@needs_tasks
class ResultTests(JobsTestMixin, TestCase):
    def test_every_waiting_state_is_ready(self):
        result = tf.add.enqueue(1, 1)
        later = tf.add.using(run_after=timezone.now() + datetime.timedelta(hours=1)).enqueue(1, 1)
        for result_id in (result.id, later.id):
            self.assertEqual(tf.add.get_result(result_id).status, "READY")

    def test_running(self):
        result = tf.add.enqueue(1, 1)
        [job] = get_engine().fetch_jobs("default", 1, ["node-a", "producer-1"], timezone.now())
        running = tf.add.get_result(result.id)
        self.assertEqual(running.status, "RUNNING")
        self.assertEqual(running.started_at, job.attempted_at)
        self.assertEqual(running.last_attempted_at, job.attempted_at)
        self.assertEqual((running.worker_ids, running.attempts), (["node-a"], 1))
        self.assertIsNone(running.finished_at)
        self.assertFalse(running.is_finished)

    def test_successful(self):
        result = tf.add.enqueue(2, 3)
        self.assertEqual(self.drain_queue("default")["completed"], 1)
        done = tf.add.get_result(result.id)
        job = job_of(result)
        self.assertEqual(done.status, "SUCCESSFUL")
        self.assertEqual(done.return_value, 5)
        self.assertEqual(done.finished_at, job.completed_at)
        self.assertEqual(done.started_at, job.attempted_at)
        self.assertEqual((done.worker_ids, done.errors), (["test"], []))
        self.assertTrue(done.is_finished)
        result.refresh()
        self.assertEqual((result.status, result.return_value), ("SUCCESSFUL", 5))

    def test_failed_after_its_attempts_with_every_error(self):
        result = tf.always_fails.enqueue("boom")
        with self.assertLogs("django_jobs.executor", "WARNING") as logs:
            self.assertEqual(self.drain_queue("default")["failed"], 1)
        self.assertIn("retryable", logs.output[0])
        retrying = tf.always_fails.get_result(result.id)
        self.assertEqual((retrying.status, len(retrying.errors)), ("READY", 1))
        with self.assertLogs("django_jobs.executor", "WARNING") as logs:
            self.assertEqual(self.drain_queue("default", with_scheduled=True)["discarded"], 1)
        self.assertIn("discarded", logs.output[0])
        failed = tf.always_fails.get_result(result.id)
        self.assertEqual(failed.status, "FAILED")
        self.assertEqual(failed.attempts, 2)
        self.assertEqual(failed.finished_at, job_of(result).discarded_at)
        self.assertEqual(len(failed.errors), 2)
        for error in failed.errors:
            self.assertEqual(error.exception_class_path, "tests.task_functions.TaskFailure")
            self.assertIs(error.exception_class, tf.TaskFailure)
            self.assertIn("TaskFailure: boom", error.traceback)
            self.assertIn("raise TaskFailure(message)", error.traceback)
        with self.assertRaisesMessage(ValueError, "Task failed"):
            _ = failed.return_value

    def test_cancelled_is_failed(self):
        signals = Signals(self)
        result = tf.add.enqueue(1, 1)
        with self.captureOnCommitCallbacks(execute=True):
            control.cancel_job(job_of(result))
        self.assertEqual(signals.of("finished"), [(result.id, "FAILED")])
        cancelled = tf.add.get_result(result.id)
        self.assertEqual(cancelled.status, "FAILED")
        self.assertEqual(cancelled.finished_at, job_of(result).cancelled_at)
        self.assertEqual((cancelled.errors, cancelled.attempts), ([], 0))  # it never ran

    def test_unknown_ids(self):
        plain = NoopWorker.enqueue({"n": 1})  # a job, but no task's
        for result_id in ("nope", "", "0", "-4", "99999999", str(2 ** 70), str(plain.pk)):
            with self.subTest(result_id=result_id):
                with self.assertRaises(jobs_tasks.TaskResultDoesNotExist):
                    tf.add.get_backend().get_result(result_id)
                with self.assertRaises(jobs_tasks.TaskResultDoesNotExist):
                    async_to_sync(tf.add.aget_result)(result_id)

    def test_a_result_of_another_task(self):
        result = tf.add.enqueue(1, 1)
        with self.assertRaises(TaskResultMismatch):
            tf.echo.get_result(result.id)

    def test_aget_result(self):
        result = tf.add.enqueue(1, 1)
        self.drain_queue("default")
        fetched = async_to_sync(tf.add.aget_result)(result.id)
        self.assertEqual((fetched.status, fetched.return_value), ("SUCCESSFUL", 2))
        async_to_sync(result.arefresh)()
        self.assertEqual(result.return_value, 2)


@needs_tasks
class RunTests(JobsTestMixin, TestCase):
    """Tasks run through the executor ``runjobs`` uses (``drain_queue``), in this process."""

    def run_task(self, task, *args, fails=False, **kwargs):
        """Enqueue ``task``, run it (its retries too, without waiting for their backoff);
        ``fails``: an attempt fails, as the executor's log says."""
        result = task.enqueue(*args, **kwargs)
        if not fails:
            self.drain_queue(result.task.queue_name, with_scheduled=True)
        else:
            with self.assertLogs("django_jobs.executor", "WARNING") as logs:
                self.drain_queue(result.task.queue_name, with_scheduled=True)
            self.assertIn(f"job {result.id} django_jobs.tasks.", logs.output[0])
        return task.get_result(result.id)

    def test_takes_context(self):
        done = self.run_task(tf.context_info, 7)
        self.assertEqual(done.return_value, {
            "x": 7, "attempt": 1, "id": done.id, "status": "RUNNING", "worker_ids": ["test"],
            "path": "tests.task_functions.context_info"})

    def test_retried_until_it_succeeds(self):
        done = self.run_task(tf.flaky, 3, fails=True)
        self.assertEqual((done.status, done.return_value, done.attempts), ("SUCCESSFUL", 3, 3))
        self.assertEqual([e.exception_class_path for e in done.errors],
                         ["tests.task_functions.TaskFailure"] * 2)
        self.assertIn("attempt 2 fails", done.errors[1].traceback)
        self.assertLess(done.started_at, done.last_attempted_at)

    def test_async_tasks(self):
        self.assertEqual(self.run_task(tf.async_add, 20, 22).return_value, 42)
        self.assertEqual(self.run_task(tf.async_context).return_value, 1)

    def test_none_is_a_return_value(self):
        done = self.run_task(tf.returns_nothing)
        self.assertEqual(done.status, "SUCCESSFUL")
        self.assertIsNone(done.return_value)

    def test_a_return_value_json_cannot_hold_fails_the_attempt(self):
        failed = self.run_task(tf.returns_a_set, fails=True)
        self.assertEqual((failed.status, len(failed.errors)), ("FAILED", 3))
        for error in failed.errors:
            self.assertEqual(error.exception_class_path, "builtins.TypeError")
            self.assertIn("Unsupported type", error.traceback)

    def test_a_return_value_over_the_limit_fails_the_attempt(self):
        failed = self.run_task(tf.returns_too_much, fails=True)
        self.assertEqual(failed.status, "FAILED")
        self.assertEqual(failed.errors[0].exception_class_path,
                         "django_jobs.pro.recorded.ResultTooLarge")
        self.assertIn("over its recorded limit of 100 bytes", failed.errors[0].traceback)

    def test_signals(self):
        signals = Signals(self)
        with self.captureOnCommitCallbacks(execute=True):
            ok = self.run_task(tf.add, 1, 2)
        self.assertEqual(signals.of("started"), [(ok.id, "RUNNING")])
        self.assertEqual(signals.of("finished"), [(ok.id, "SUCCESSFUL")])
        finished = next(sent for kind, _, _, _, sent in signals.sent if kind == "finished")
        self.assertEqual(finished.return_value, 3)
        self.assertEqual(finished.finished_at, ok.finished_at)
        signals.sent.clear()
        with self.captureOnCommitCallbacks(execute=True):
            failed = tf.always_fails.enqueue("x")
            with self.assertLogs("django_jobs.executor", "WARNING"):
                self.drain_queue("default")  # failed once, retryable: no task_finished yet
        self.assertEqual(signals.of("finished"), [])
        # (Outermost: task_finished is sent when the on-commit callbacks run.)
        with self.assertLogs(TASKS_LOGGER, "ERROR") as logged, \
                self.captureOnCommitCallbacks(execute=True), \
                self.assertLogs("django_jobs.executor", "WARNING"):
            self.drain_queue("default", with_scheduled=True)
        self.assertIn(f"Task id={failed.id} path=tests.task_functions.always_fails "
                      f"state=FAILED", logged.output[0])
        self.assertEqual(signals.of("started"), [(failed.id, "RUNNING")] * 2)
        self.assertEqual(signals.of("finished"), [(failed.id, "FAILED")])
        self.assertTrue(all(sender is jobs_tasks.JobsBackend for _, sender, *_ in signals.sent))

    def test_a_receiver_that_raises_does_not_fail_the_task(self):
        def broken(**kwargs):
            raise RuntimeError("receiver bug")

        task_started.connect(broken, weak=False)
        self.addCleanup(task_started.disconnect, broken)
        with self.assertLogs("django_jobs.tasks", "ERROR"):
            self.assertEqual(self.run_task(tf.add, 1, 1).return_value, 2)

    def test_inline_testing_mode(self):
        signals = Signals(self)
        with with_testing_mode("inline"):
            done = tf.add.enqueue(3, 4)
        self.assertEqual((done.status, done.return_value), ("SUCCESSFUL", 7))
        self.assertTrue(done.id.startswith("inline-"))
        self.assertFalse(Job.objects.exists())
        self.assertEqual([kind for kind, *_ in signals.sent], ["started", "enqueued",
                                                               "finished"])
        with self.assertRaises(jobs_tasks.TaskResultDoesNotExist):
            tf.add.get_result(done.id)

    def test_a_task_that_no_longer_imports(self):
        result = tf.add.enqueue(1, 1)
        Job.objects.filter(pk=int(result.id)).update(
            args={"task": "tests.task_functions.gone", "args": [], "kwargs": {}})
        with self.assertLogs("django_jobs.executor", "WARNING"):
            self.drain_queue("default")
        job = job_of(result)
        self.assertEqual(job.state, "retryable")
        self.assertIn("tests.task_functions.gone cannot be imported", job.errors[0]["error"])
        with self.assertRaisesMessage(jobs_tasks.InvalidTask, "cannot be imported"):
            tf.add.get_result(result.id)


@needs_tasks
class AdminTests(TestCase):
    def setUp(self):
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))

    def test_the_job_list_names_the_task_and_finds_it(self):
        task_job = job_of(tf.context_info.enqueue(1))
        plain = NoopWorker.enqueue({"n": 1})
        url = "/admin/django_jobs/job/"
        page = self.client.get(url).content.decode()
        self.assertIn("context_info <small>task</small>", page)
        self.assertIn("task tests.task_functions.context_info (django_jobs.tasks.TaskWorker)",
                      page)
        for search in ("context_info", "task:task_functions.context", "TASK_FUNCTIONS"):
            with self.subTest(search=search):
                found = self.client.get(url, {"q": search}).context["cl"].result_list
                self.assertEqual([job.pk for job in found], [task_job.pk])
        found = self.client.get(url, {"q": "NoopWorker"}).context["cl"].result_list
        self.assertEqual([job.pk for job in found], [plain.pk])

    def test_the_job_page_shows_the_task_and_its_result(self):
        result = tf.echo.enqueue(1, k="v")
        JobsTestMixin.drain_queue(self, "default")
        page = self.client.get(f"/admin/django_jobs/job/{result.id}/change/").content.decode()
        self.assertIn("<dt>Task</dt><dd><code>tests.task_functions.echo</code></dd>", page)
        self.assertIn("&quot;kwargs&quot;: {", page)  # the recorded result, decoded


@needs_tasks
class RunjobsTests(RunjobsMixin, TransactionTestCase):
    """Tasks run by a real ``runjobs`` child on this run's test database."""

    def test_runjobs_runs_retries_and_records_tasks(self):
        results = {
            "add": tf.add.enqueue(2, 3),
            "flaky": tf.flaky.enqueue(2),
            "fails": tf.always_fails.enqueue("from the child"),
            "async": tf.async_add.enqueue(1, 1),
            "context": tf.context_info.enqueue(9),
            "urgent": tf.urgent.enqueue(5),
            "timeout": tf.sleeps.enqueue(60),
            "async timeout": tf.async_sleeps.enqueue(60),
        }
        node = self.start_runjobs("tasks-node")

        def fresh():
            return {name: r.task.get_result(r.id) for name, r in results.items()}

        def all_finished():
            return all(r.is_finished for r in fresh().values())

        wait_until(all_finished, 90, what="every task to finish",
                   describe=lambda: self.runjobs_report(
                       ", ".join(f"{n}: {r.status}" for n, r in fresh().items())))
        done = fresh()
        self.assertEqual(done["add"].return_value, 5)
        self.assertEqual(done["async"].return_value, 2)
        self.assertEqual(done["urgent"].return_value, 5)
        self.assertEqual((done["flaky"].return_value, done["flaky"].attempts), (2, 2))
        self.assertEqual(done["flaky"].worker_ids, ["tasks-node", "tasks-node"])
        self.assertEqual(done["flaky"].errors[0].exception_class_path,
                         "tests.task_functions.TaskFailure")
        fails = done["fails"]
        self.assertEqual((fails.status, fails.attempts, len(fails.errors)), ("FAILED", 2, 2))
        self.assertIn("TaskFailure: from the child", fails.errors[-1].traceback)
        context = done["context"].return_value
        self.assertEqual((context["x"], context["attempt"], context["worker_ids"]),
                         (9, 1, ["tasks-node"]))
        self.assertEqual(context["id"], results["context"].id)
        for name in ("timeout", "async timeout"):
            [error] = done[name].errors
            self.assertEqual((done[name].status, error.exception_class_path),
                             ("FAILED", "django_jobs.execution.interrupt.JobTimeout"))
            self.assertIn("timeout of 0.5 s", error.traceback)
        for result in done.values():
            self.assertLessEqual(result.enqueued_at, result.started_at)
            self.assertLessEqual(result.started_at, result.finished_at)
        self.stop_runjobs(node, within=60)
