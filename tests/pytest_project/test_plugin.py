"""django_jobs' pytest fixtures (``jobs``, ``inline_jobs``, ``manual_jobs``) with pytest-django.

Run by tests/test_testing_pytest.py in a subprocess; the conftest.py beside this file makes
every test ``manual`` (its autouse fixture uses ``manual_jobs``).
"""

import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_jobs import testing
from django_jobs.models import Job

from tests import testing_workers as w

ZERO = {"completed": 0, "failed": 0, "discarded": 0, "cancelled": 0, "snoozed": 0}


@pytest.fixture(autouse=True)
def _clear_performed():
    w.performed.clear()


def test_the_jobs_fixture_holds_the_helpers(jobs):
    for name in ("assert_enqueued", "assert_not_enqueued", "all_enqueued", "perform_job",
                 "drain_queue", "with_testing_mode"):
        assert callable(getattr(jobs, name)), name
    assert repr(jobs.ANY) == "ANY"


# -- unit-testing a worker: no database needed --------------------------------------------------

def test_perform_job(jobs):
    assert jobs.perform_job(w.MailerWorker, {"email": "ada@example.com"}) == {
        "sent_to": "ada@example.com"}
    assert jobs.perform_job("tests.testing_workers.AsyncRecordWorker", {"value": 1}) == {
        "async": 1}


def test_perform_job_lets_exceptions_through(jobs):
    with pytest.raises(ValueError, match="boom 7"):
        jobs.perform_job(w.FailWorker, {"n": 7})


# -- asserting what was enqueued ------------------------------------------------------------

@pytest.mark.django_db
def test_what_a_view_enqueued(client, settings, jobs):
    settings.ROOT_URLCONF = "tests.testing_workers"
    response = client.post("/signup/", {"email": "ada@example.com"})
    assert response.status_code == 201
    job = jobs.assert_enqueued(worker=w.MailerWorker, args={"email": "ada@example.com"},
                               meta={"ip": jobs.ANY}, queue="mailers")
    assert job.args == {"email": "ada@example.com", "source": "signup"}
    jobs.assert_not_enqueued(worker=w.MailerWorker, args={"email": "grace@example.com"})
    assert jobs.all_enqueued(worker="tests.testing_workers.MailerWorker") == [job]
    assert w.performed.items == []


def test_a_failing_assertion_says_what_was_enqueued(db, jobs):
    w.RecordWorker.enqueue({"n": 1})
    with pytest.raises(AssertionError) as caught:
        jobs.assert_enqueued(worker=w.OtherWorker, args={"n": 1})
    message = str(caught.value)
    assert message.startswith("Expected a job matching worker=<class "
                              "'tests.testing_workers.OtherWorker'>, args={'n': 1}, found none.")
    assert "tests.testing_workers.RecordWorker queue=testing state=available" in message
    with pytest.raises(AssertionError, match="Expected no job matching"):
        jobs.assert_not_enqueued(args={"n": 1})


def test_waiting_for_a_job_inserted_by_another_thread(transactional_db, jobs):
    def insert_later():
        try:
            time.sleep(0.2)
            w.RecordWorker.enqueue({"n": "late"})
        finally:
            connection.close()

    thread = threading.Thread(target=insert_later)
    thread.start()
    try:
        jobs.assert_not_enqueued(args={"n": "late"})
        assert jobs.assert_enqueued(args={"n": "late"}, timeout=5).args == {"n": "late"}
    finally:
        thread.join(5)


# -- modes --------------------------------------------------------------------------------

def test_manual_mode_from_the_conftest(db):
    assert testing.testing_mode() == "manual"
    job = w.RecordWorker.enqueue({"n": 1})
    assert job.pk is not None and job.state == "available"
    assert w.performed.items == []
    with pytest.raises(CommandError, match="testing mode 'manual' is on"):
        call_command("runjobs")


def test_inline_jobs(db, inline_jobs):
    assert testing.testing_mode() == "inline"
    job = w.MailerWorker.enqueue({"email": "ada@example.com"})
    assert (job.state, job.result) == ("completed", {"sent_to": "ada@example.com"})
    failed = w.FailWorker.enqueue({"n": 1})
    assert failed.state == "retryable"
    assert Job.objects.count() == 0


def test_the_mode_is_back_after_inline_jobs():
    assert testing.testing_mode() == "manual"


def test_with_testing_mode(db, jobs):
    with jobs.with_testing_mode("inline"):
        assert w.RecordWorker.enqueue({"n": 1}).state == "completed"
    with jobs.with_testing_mode(None):
        assert testing.testing_mode() is None
    assert testing.testing_mode() == "manual"
    assert w.RecordWorker.enqueue({"n": 2}).state == "available"
    assert w.performed.args() == [{"n": 1}]


# -- draining queues ------------------------------------------------------------------------

def test_drain_queue(db, jobs):
    w.RecordWorker.enqueue({"n": 1})
    w.FailWorker.enqueue({"n": 2})
    w.ChainWorker.enqueue({"depth": 1})
    assert jobs.drain_queue("testing") == {**ZERO, "completed": 2, "failed": 1}
    jobs.assert_enqueued(worker=w.ChainWorker, args={"depth": 0})
    assert jobs.drain_queue("testing", with_recursion=True) == {**ZERO, "completed": 1}
    jobs.assert_not_enqueued()


def test_drain_queue_with_commits(transactional_db, jobs):
    w.ChainWorker.enqueue({"depth": 2})
    w.RecordWorker.enqueue({"n": 1}, schedule_in=3600)
    assert jobs.drain_queue("testing", with_recursion=True, with_scheduled=True) == {
        **ZERO, "completed": 4}
    assert Job.objects.filter(state="completed").count() == 4
