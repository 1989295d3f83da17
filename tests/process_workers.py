"""Workers of tests/test_process_executor.py: ``executor = "process"`` (module level: runjobs
children and their job processes import them)."""

import os
import sys
import time

from django.db import connection

from django_jobs import Worker

EFFECT_TABLE = "process_effect"
EFFECT_DDL = (f"CREATE TABLE {EFFECT_TABLE} (job_id BIGINT NOT NULL, pid INTEGER NOT NULL, "
              f"node_pid INTEGER NOT NULL)")


def record(job):
    """One row: the job, the process that ran it and that process's parent (the node)."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {EFFECT_TABLE} (job_id, pid, node_pid) VALUES (%s, %s, %s)",
                       [job.pk, os.getpid(), os.getppid()])


class InProcess(Worker):
    """Records, sleeps in C for ``args["sleep"]`` seconds (a single call no thread can cut
    short), then returns ``args.get("result")``; ``args["exit"]``: sys.exit(3) instead."""

    queue = "procs"
    executor = "process"
    max_attempts = 2

    def perform(self, job):
        record(job)
        if job.args.get("exit"):
            sys.exit(3)
        time.sleep(float(job.args.get("sleep", 0)))
        return job.args.get("result")

    def timeout(self, job):
        return job.args.get("timeout")

    def backoff(self, job):
        return 60


from .pro_workers import SealedWorker  # noqa: E402 - after the plain workers on purpose


class SealedInProcess(SealedWorker):
    """Encrypted args, a recorded result (the SHA-256 of the secret): in a job process."""

    queue = "procs"
    executor = "process"
