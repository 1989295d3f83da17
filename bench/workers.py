"""Workers used by the benchmarks."""

from django_jobs import Worker


class NoopWorker(Worker):
    def perform(self, job):
        return None
