"""Writing outcomes in batches, without losing one.

Pool threads hand their outcomes to the acker, which writes whatever has gathered in one
transaction (completed jobs in a single UPDATE). A write that fails because the database is busy
is retried with backoff; one that fails otherwise is written again one outcome at a time, so that
an outcome that cannot be written holds back no other: it is kept apart and retried with a
growing backoff. ``stop`` writes everything still pending before it returns.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connections

from ..engines import Engine
from ..outcome import Outcome
from ..transitions import ack, ack_separately
from .retry import Retry

logger = logging.getLogger("django_jobs.acker")


class Acker:
    #: Seconds the acker waits after the first outcome for others to join its statement: short
    #: beside the job's own run, it delays only when the job shows as completed, not the job.
    gather = 0.001

    def __init__(self, engine: Engine, *, max_batch: int = 500) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: list[Outcome] = []
        #: Outcomes that failed to be written on their own, retried apart (see _run).
        self._held: list[Outcome] = []
        self._held_at = 0.0
        self._held_backoff = 0.5
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="django_jobs-acker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def push(self, outcome: Outcome) -> None:
        with self._cond:
            self._pending.append(outcome)
            self._cond.notify()

    def _run(self) -> None:
        retry = Retry(logger, alias=self.engine.alias, is_busy=self.engine.is_busy, first=0.05)
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait(self._held_wait())
                    if self._held and time.monotonic() >= self._held_at:
                        break
                if not self._pending and self._stopping:
                    break
                # Outcomes of jobs fetched together arrive a little apart: gather them for a
                # moment, so that they share a statement instead of each paying a round trip.
                gather_until = time.monotonic() + self.gather
                while self._pending and len(self._pending) < self.max_batch \
                        and not self._stopping:
                    remaining = gather_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._pending[:self.max_batch]
            if self._held and time.monotonic() >= self._held_at:
                self._retry_held()
            if not batch:
                continue
            try:
                ack(batch, using=self.engine.alias)
            except Exception as exc:
                if self.engine.is_busy(exc):
                    retry.failed(exc, f"writing {len(batch)} job outcomes")
                    continue
                logger.exception("writing %d job outcomes failed; writing them one by one",
                                 len(batch))
                connections[self.engine.alias].close()
                # One outcome that cannot be written (what its row holds breaks a feature's
                # acked, say) must not hold back the others: each is written on its own, and
                # the ones that fail alone are held apart and retried with backoff.
                failed = ack_separately(batch, using=self.engine.alias)
                if len(failed) == len(batch):  # the database, not a row: retry them all
                    retry.wait()
                    continue
                self._hold(failed)
            retry.succeeded()
            with self._cond:
                del self._pending[:len(batch)]
        if self._held:
            self._retry_held()
            for outcome in self._held:
                logger.error("job %s: its outcome (%s) could not be written; it stays "
                             "executing until the lifeline rescues it", outcome.job_id,
                             outcome.state)
        connections[self.engine.alias].close()

    #: Longest wait between retries of outcomes that failed to be written on their own.
    held_backoff_cap = 60.0

    def _hold(self, failed: list) -> None:
        """Keep outcomes that failed on their own apart, for a retry after a backoff."""
        for outcome, exc in failed:
            logger.error("job %s: writing its outcome (%s) failed on its own; retrying it "
                         "apart: %s", outcome.job_id, outcome.state, exc)
        self._held = [outcome for outcome, _ in failed]
        self._held_backoff = min(self._held_backoff * 2, self.held_backoff_cap)
        self._held_at = time.monotonic() + self._held_backoff

    def _retry_held(self) -> None:
        held, self._held = self._held, []
        failed = ack_separately(held, using=self.engine.alias)
        if failed:
            self._hold(failed)
        else:
            self._held_backoff = 0.5

    def _held_wait(self) -> float | None:
        """How long the idle acker may wait: until held outcomes are due, or for a push."""
        if not self._held:
            return None
        return max(0.0, self._held_at - time.monotonic())

    def stop(self, timeout: float | None = None) -> bool:
        """Write everything pending, then stop; False if it did not finish in ``timeout``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()
