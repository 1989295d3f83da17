"""Workers of the chain and deadline tests (module level: runjobs children import them)."""

import time

from django.db import connection

from django_jobs import Snooze, Worker

QUEUE = "chains"
#: Raw table of start/end times per job, created by the tests (see test_chains.py).
EFFECT_TABLE = "chain_effect"


def record(job, event: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {EFFECT_TABLE} (job_id, chain, seq, event, at) "
                       f"VALUES (%s, %s, %s, %s, %s)",
                       [job.pk, str(job.args.get("account")), job.args.get("seq", 0), event,
                        time.monotonic()])


class AccountWebhook(Worker):
    """One chain per account; fails or snoozes when its args say so (once)."""

    queue = QUEUE
    max_attempts = 5
    chain = {"by": {"args": "account"}}

    def perform(self, job):
        record(job, "start")
        time.sleep(job.args.get("sleep", 0))
        if job.args.get("fail") and job.attempt == 1:
            record(job, "fail")
            raise RuntimeError("webhook endpoint down")
        if job.args.get("snooze") and not job.meta.get("snoozed"):
            record(job, "snooze")
            return Snooze(0.05)
        record(job, "end")

    def backoff(self, job):
        return 0.05


class HoldingChain(Worker):
    queue = QUEUE
    max_attempts = 1
    chain = {"by": ["worker", {"meta": "tenant"}], "on_discarded": "hold",
             "on_cancelled": "hold"}

    def perform(self, job):
        if job.args.get("fail"):
            raise RuntimeError("boom")


class WorkerChain(Worker):
    queue = QUEUE
    chain = True

    def perform(self, job):
        return None


class ShortDeadline(Worker):
    queue = QUEUE
    deadline = 60

    def perform(self, job):
        time.sleep(job.args.get("sleep", 0))


class ForcedDeadline(Worker):
    queue = QUEUE
    deadline = {"in": 60, "force": True}

    def perform(self, job):
        deadline = time.monotonic() + job.args.get("sleep", 0)
        while time.monotonic() < deadline:
            time.sleep(0.01)
