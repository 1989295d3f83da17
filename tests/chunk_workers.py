"""Workers of the chunk tests (module level: runjobs children import them)."""

from django_jobs import ChunkCancel, ChunkDiscard, ChunkError, ChunkWorker, Worker

QUEUE = "chunks"
#: What each chunk got (job ids), in this process.
CHUNKS: list[list[int]] = []


class SMSWorker(ChunkWorker):
    queue = QUEUE
    size = 5
    timeout = 0.3
    max_attempts = 3

    def process(self, jobs):
        CHUNKS.append([job.pk for job in jobs])
        failed = [job for job in jobs if job.args.get("fail") and job.attempt == 1]
        dropped = [job for job in jobs if job.args.get("drop")]
        stopped = [job for job in jobs if job.args.get("stop")]
        return [ChunkError("gateway refused", failed), ChunkDiscard("bad number", dropped),
                ChunkCancel("unsubscribed", stopped)]

    def backoff(self, job):
        return 0.01


class PlainSMS(Worker):
    queue = QUEUE

    def perform(self, job):
        return None
