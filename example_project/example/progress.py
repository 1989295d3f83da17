"""Progress of the demo's jobs on the terminal while ``runjobs`` runs them.

:class:`ProgressWatcher` is a thread that counts the jobs by state from the database, a few
times a second, and shows one line: rewritten in place (``\\r``) when the output is a terminal,
printed as a plain line every couple of seconds, when the counts changed, otherwise (a pipe, a
log, CI). It also bounds the run: past ``time_limit`` seconds it sends this process SIGTERM,
which ``runjobs`` takes as "stop gracefully".
"""

from __future__ import annotations

import datetime
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections
from django.utils import timezone

from django_jobs.models import Job, JobState

#: States in which a job is over.
FINISHED = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)
#: A scheduled or retryable job due later than this is not waited for (as runjobs
#: --stop-when-empty does): it counts as "later", not as work to do now.
HORIZON = datetime.timedelta(seconds=60)


@dataclass
class Snapshot:
    """The demo's jobs at one moment: ``states`` counts every job by state; ``later`` is how
    many wait for a time past the horizon."""

    states: Counter = field(default_factory=Counter)
    later: int = 0

    @property
    def done(self) -> int:
        return sum(self.states[s] for s in FINISHED)

    @property
    def total(self) -> int:
        """Jobs the node works on now: all but those waiting for later."""
        return sum(self.states.values()) - self.later

    def text(self, elapsed: float) -> str:
        retrying = self.states[JobState.RETRYABLE] + self.states[JobState.SCHEDULED] - self.later
        parts = [f"{self.states[JobState.COMPLETED]} completed",
                 f"{self.states[JobState.DISCARDED]} discarded",
                 f"{self.states[JobState.CANCELLED]} cancelled",
                 f"{self.states[JobState.EXECUTING]} running",
                 f"{retrying} waiting to retry"]
        return f"{self.done}/{self.total} jobs done ({', '.join(parts)}) after {elapsed:.0f} s"


def snapshot(jobs: Callable[[], object]) -> Snapshot:
    """Count ``jobs()`` (a Job queryset) by state; one query."""
    horizon = timezone.now() + HORIZON
    shot = Snapshot()
    for state, scheduled_at in jobs().values_list("state", "scheduled_at"):
        shot.states[state] += 1
        if state in (JobState.SCHEDULED, JobState.RETRYABLE) and scheduled_at > horizon:
            shot.later += 1
    return shot


class ProgressWatcher(threading.Thread):
    """Shows the progress of the jobs ``jobs()`` returns until :meth:`finish` is called."""

    BAR = 24

    def __init__(self, write: Callable[[str], None], *, tty: bool,
                 jobs: Callable[[], object] = lambda: Job.objects.all(),
                 time_limit: float = 60.0) -> None:
        super().__init__(name="demo-progress", daemon=True)
        self.write = write
        self.tty = tty
        self.jobs = jobs
        self.time_limit = time_limit
        self.started = time.monotonic()
        self.timed_out = False
        self._done = threading.Event()
        self._last_text = ""

    def run(self) -> None:
        interval = 0.2 if self.tty else 2.0
        try:
            while not self._done.wait(interval):
                self.show(snapshot(self.jobs))
                if not self.timed_out and self.elapsed() > self.time_limit:
                    self.timed_out = True
                    os.kill(os.getpid(), signal.SIGTERM)  # runjobs: stop gracefully
        finally:
            connections.close_all()  # this thread's connections only (they are per thread)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def show(self, shot: Snapshot) -> None:
        text = shot.text(self.elapsed())
        if self.tty:
            filled = self.BAR * shot.done // max(shot.total, 1)
            bar = "#" * filled + "." * (self.BAR - filled)
            self.write(f"\r\033[K  [{bar}] {text}")
        elif text.split(" after ")[0] != self._last_text.split(" after ")[0]:
            self.write(f"  {text}\n")
        self._last_text = text

    def finish(self) -> Snapshot:
        """Stop the thread and show the final counts (a last line on a terminal too)."""
        self._done.set()
        self.join(10)
        shot = snapshot(self.jobs)
        self.show(shot)
        if self.tty:
            self.write("\n")
        return shot
