"""Writing outcomes in batches, without losing one.

Pool threads hand their outcomes to the acker, which writes whatever has gathered in one
transaction (completed jobs in a single UPDATE). A failed write keeps the batch and retries
with backoff; ``stop`` writes everything still pending before it returns.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connections

from ..engines import Engine
from ..execution.outcome import Outcome

logger = logging.getLogger("django_jobs.acker")


class Acker:
    #: Seconds the acker waits after the first outcome for others to join its statement: short
    #: beside the job's own run, it delays only when the job shows as completed, not the job.
    gather = 0.001

    def __init__(self, engine: Engine, *, max_batch: int = 500) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: list[Outcome] = []
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
        backoff = 0.05
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    break
                # Outcomes of jobs fetched together arrive a little apart: gather them for a
                # moment, so that they share a statement instead of each paying a round trip.
                gather_until = time.monotonic() + self.gather
                while len(self._pending) < self.max_batch and not self._stopping:
                    remaining = gather_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._pending[:self.max_batch]
            try:
                self.engine.ack(batch)
            except Exception as exc:
                if self.engine.is_busy(exc):
                    logger.info("database busy; writing %d job outcomes again in %.1f s",
                                len(batch), backoff)
                else:
                    logger.exception("writing %d job outcomes failed; retrying in %.1f s",
                                     len(batch), backoff)
                connections[self.engine.alias].close()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            with self._cond:
                del self._pending[:len(batch)]
        connections[self.engine.alias].close()

    def stop(self, timeout: float | None = None) -> bool:
        """Write everything pending, then stop; False if it did not finish in ``timeout``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()
