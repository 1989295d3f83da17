"""Workers of the batch tests (module level: runjobs children import them)."""

from django_jobs import Worker
from django_jobs.pro.batch import BatchWorker

QUEUE = "batches"


class MailingWorker(BatchWorker):
    queue = QUEUE
    max_attempts = 2

    def process(self, job):
        if job.args.get("fail"):
            raise RuntimeError("mail server down")

    def backoff(self, job):
        return 0.01

    def handle_completed(self, job):
        return {"handler": "completed", "batch": job.meta["batch_id"]}

    def handle_exhausted(self, job):
        return None

    def handle_discarded(self, job):
        return None


class PlainMember(Worker):
    queue = QUEUE

    def perform(self, job):
        return None
