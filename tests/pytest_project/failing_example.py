"""Run by path from tests/test_testing_pytest.py, not collected by default
(``python_files = test_*.py``): what pytest reports for a failed ``assert_enqueued``.

It also imports ``testing_mode`` by name, as a project would: a helper whose name starts with
"test" must not be collected by pytest as a test of this module.
"""

from django_jobs.testing import testing_mode

from tests import testing_workers as w


def test_fails_and_lists_what_was_enqueued(db, jobs):
    assert testing_mode() == "manual"
    w.RecordWorker.enqueue({"n": 1, "blob": "x" * 300})
    w.MailerWorker.enqueue({"email": "ada@example.com"})
    jobs.assert_enqueued(worker=w.OtherWorker, args={"n": 1})
