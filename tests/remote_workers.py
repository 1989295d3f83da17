"""A worker that the test process treats as remote (another deployment's): the tests list
``tests.remote_workers`` in ``DJANGO_JOBS["REMOTE_WORKERS"]`` and never import this module;
only the ``runjobs`` children they start do (they stand for the deployment that serves it)."""

from django_jobs import Worker


class Invoice(Worker):
    """Returns its args and its job's options, recorded, so the test reads what ran."""

    recorded = True

    def perform(self, job):
        return {"args": job.args, "queue": job.queue, "priority": job.priority,
                "max_attempts": job.max_attempts, "tags": job.tags}
