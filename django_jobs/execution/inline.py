"""Running jobs at once, in the calling thread, without writing them: inline mode (an engine,
:class:`InlineEngine`) and the testing helpers that perform a single job.

The jobs go through the same executor and job features as in ``runjobs``; only the database is
left out: nothing is claimed, acknowledged or written.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils import timezone

from ..engines import Engine
from ..models import Job, JobState
from .executor import execute
from .interrupt import Running


def as_fetched(job: Job, attempted_by: list[str]) -> None:
    """Give an unsaved job what a fetch gives a row: executing, attempt bumped, attempted
    now by ``attempted_by``."""
    job.state = JobState.EXECUTING
    job.attempt = (job.attempt or 0) + 1
    job.attempted_at = timezone.now()
    job.attempted_by = attempted_by


def run_inline(jobs: Sequence[Job]) -> list[Job]:
    """Inline mode: run ``jobs`` now, in this thread, through the executor; nothing is written.

    Each job comes back with the state and errors its attempt gave it (``completed``,
    ``retryable``, ...), ``attempt`` 1, what ``perform`` returned as ``job.result``, and no id.
    """
    for job in jobs:
        as_fetched(job, ["inline", "inline"])
        outcome, result = execute(Running(job, detached=True), reset=False)
        outcome.apply_to(job)
        job.result = result
    return list(jobs)


class InlineEngine(Engine):
    """The engine of the ``inline`` testing mode (:func:`django_jobs.engines.insert_engine`):
    inserting a job runs it at once (:func:`run_inline`) and writes nothing. It serves inserts
    only; everything else is the database's engine's."""

    stores_jobs = False

    def insert_jobs(self, jobs: Sequence[Job], *, skip_conflicts: bool = False) -> None:
        run_inline(jobs)

    def fetch_statement(self, *args, **kwargs):
        raise NotImplementedError("the inline engine runs inserted jobs; it fetches none")

    def serialize(self, keys) -> None:
        return None
