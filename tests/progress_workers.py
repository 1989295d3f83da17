"""Workers that report their progress (tests/test_progress.py), some run by ``runjobs``
children."""

import time
from pathlib import Path

from django_jobs import Snooze, Worker


def wait_for_file(path: str, timeout: float = 60.0) -> None:
    """Wait until the test creates ``path``; fail the attempt after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


class ProgressWorker(Worker):
    """Reports each of ``args["steps"]`` in a row, then ends as ``args["then"]`` says."""

    queue = "progress"
    max_attempts = 2

    def perform(self, job):
        for value in job.args.get("steps", []):
            job.report_progress(value)
        then = job.args.get("then")
        if then == "snooze":
            return Snooze(60)
        if then == "fail":
            raise RuntimeError("failed after reporting progress")
        return job.args.get("result")


class RecordedProgressWorker(ProgressWorker):
    recorded = True


class GatedProgressWorker(Worker):
    """Reports 10, waits for the file ``args["gate"]``, reports 50 and at once 60 (held back
    by the throttle), then waits for ``args["end"]`` and returns."""

    queue = "progress"

    def perform(self, job):
        job.report_progress(10)
        wait_for_file(job.args["gate"])
        job.report_progress(50)
        job.report_progress(60)
        wait_for_file(job.args["end"])
