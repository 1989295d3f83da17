"""Workers of tests/test_process_executor.py: ``executor = "process"`` (module level: runjobs
children and their job processes import them)."""

import os
import sys
import time

from django.db import connection

from django_jobs import Worker

EFFECT_TABLE = "process_effect"
EFFECT_DDL = (f"CREATE TABLE {EFFECT_TABLE} (job_id BIGINT NOT NULL, pid INTEGER NOT NULL, "
              f"node_pid INTEGER NOT NULL, event VARCHAR(40) NOT NULL)")


def record(job, event: str = "perform"):
    """One row: the job, the process that ran it, that process's parent (the node) and what
    happened."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {EFFECT_TABLE} (job_id, pid, node_pid, event) "
                       f"VALUES (%s, %s, %s, %s)", [job.pk, os.getpid(), os.getppid(), event])


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


from django_jobs import ChunkWorker  # noqa: E402
from django_jobs.pro.batch import BatchWorker  # noqa: E402

from .pro_workers import SealedWorker  # noqa: E402 - after the plain workers on purpose


class SealedInProcess(SealedWorker):
    """Encrypted args, a recorded result (the SHA-256 of the secret): in a job process."""

    queue = "procs"
    executor = "process"


class HookedInProcess(Worker):
    """Hook methods of its own, around perform, in the job process."""

    queue = "procs"
    executor = "process"

    def before_process(self, job):
        record(job, "before_process")

    def perform(self, job):
        record(job)

    def after_process(self, state, job, result):
        record(job, f"after_process:{state}")


class ChainInProcess(Worker):
    """One chain per args["chain"]; each job takes args["sleep"] s."""

    queue = "procs"
    executor = "process"
    chain = {"by": {"args": "chain"}}

    def perform(self, job):
        record(job, "start")
        time.sleep(float(job.args.get("sleep", 0)))
        record(job, "end")


class BatchInProcess(BatchWorker):
    queue = "procs"
    executor = "process"

    def process(self, job):
        record(job)

    def handle_completed(self, job):
        record(job, "handle_completed")


class ChunkInProcess(ChunkWorker):
    queue = "procs"
    executor = "process"
    size = 5

    def process(self, jobs):
        for job in jobs:
            record(job, f"chunk:{len(jobs)}")
