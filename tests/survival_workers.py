"""Workers run by ``runjobs`` child processes in tests/test_survival.py.

Each records its side effect as a row of the raw table ``survival_effect`` (created and dropped
by the tests), written in autocommit on the job's own connection: a row exists exactly when an
attempt got that far, whatever happens to the process afterwards, so duplicates and losses are
visible in the database.
"""

import os
import time

from django.db import connection

from django_jobs import Worker

EFFECT_TABLE = "survival_effect"
EFFECT_DDL = (f"CREATE TABLE {EFFECT_TABLE} "
              "(job_id BIGINT NOT NULL, node VARCHAR(64) NOT NULL, pid INTEGER NOT NULL)")


def record(job):
    """The side effect: one row naming the job, the node and the process that ran it."""
    node = job.attempted_by[0] if job.attempted_by else ""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {EFFECT_TABLE} (job_id, node, pid) VALUES (%s, %s, %s)",
                       [job.pk, node, os.getpid()])


class RecordWorker(Worker):
    """No work but the side effect; a failed attempt is retried after 0.2 s."""

    queue = "survival"

    def perform(self, job):
        record(job)

    def backoff(self, job):
        return 0.2


class SleepWorker(Worker):
    """Sleeps ``args["sleep"]`` seconds in short slices (interruptible), then records.

    A failed attempt (say, its connection was killed) is retried after half a second instead
    of Oban's 16 s and more.
    """

    queue = "survival"

    def perform(self, job):
        deadline = time.monotonic() + float(job.args.get("sleep", 0.3))
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        record(job)

    def backoff(self, job):
        return 0.5


class BlockedWorker(Worker):
    """Blocks in a single C call (``time.sleep``) for ``args["sleep"]`` seconds, then records.

    An exception raised in its thread is only delivered when the call returns.
    """

    queue = "survival"

    def perform(self, job):
        time.sleep(float(job.args.get("sleep", 30)))
        record(job)
