"""A producer runs one queue on this node: fetch when there is room, execute, hand to acker.

It wakes when a job of its queue finishes, when an insert is announced (NOTIFY, or an insert
in this process), and every ``poll_interval`` as a safety net. Each fetch claims at most
``limit - running`` jobs in one statement. While some of its jobs still run, a producer waits
up to :attr:`Producer.coalesce` for the others to finish before it fetches, so that slots
freed one by one are filled by one fetch, not one each. Database errors are logged and retried with
backoff; they never stop the producer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.db import connections
from django.utils import timezone

from ..engines import Engine
from ..engines import wakeup
from .acker import Acker
from .process_pool import ProcessPool, runs_in_process

from .retry import Retry
from ..execution.executor import execute, failed, put_back
from ..execution.interrupt import JobCancelled, JobInterrupted, Running

logger = logging.getLogger("django_jobs.producer")


class Producer:
    #: Seconds a producer with jobs still running waits, after a slot frees, for the rest to
    #: free before fetching (it fetches at once when every slot is free). Without it, jobs that
    #: finish a little apart (any job that does some work) free their slots one by one, and
    #: each wake-up costs a fetch round trip for a single job: measured with 10 slots, a
    #: worker that records its result averaged 5 jobs a fetch and ran 30 % slower than a
    #: no-op. Short beside a fetch's round trip (about 1 ms), so a new job waits at most this.
    coalesce = 0.001

    def __init__(self, *, engine: Engine, node: str, queue: str, limit: int, acker: Acker,
                 poll_interval: float, process_pool: ProcessPool | None = None) -> None:
        self.engine = engine
        self.node = node
        self.queue = queue
        self.limit = limit
        self.paused = False
        self.acker = acker
        self.poll_interval = poll_interval
        self.process_pool = process_pool
        self.uuid = uuid.uuid4()
        self.started_at = timezone.now()
        self.running: dict[int, Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._pool = self._new_pool(limit)
        self._thread = threading.Thread(target=self._loop, name=f"django_jobs-{queue}",
                                        daemon=True)

    def _new_pool(self, size: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"django_jobs-{self.queue}")

    # -- control ------------------------------------------------------------------------------

    def start(self) -> None:
        wakeup.register(self.queue, self.wake)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def scale(self, limit: int) -> None:
        """Change the limit; a larger pool is made for new jobs, the old one drains."""
        if limit == self.limit:
            return
        with self._lock:
            if limit > self._pool._max_workers:
                old, self._pool = self._pool, self._new_pool(limit)
                self._retire(old)
            self.limit = limit
        logger.info("queue %s scaled to %d on %s", self.queue, limit, self.node)
        self.wake()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            logger.info("queue %s paused on %s", self.queue, self.node)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            logger.info("queue %s resumed on %s", self.queue, self.node)
            self.wake()

    def cancel(self, job_id: int) -> bool:
        """Stop the executing job ``job_id`` if this producer runs it."""

        running = self.running.get(job_id)
        return running is not None and running.interrupt(JobCancelled)

    # -- work ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        retry = Retry(logger, alias=self.engine.alias, is_busy=self.engine.is_busy)
        while not self._stopping:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            self._coalesce()
            if self._stopping:
                break
            try:
                self._dispatch()
            except Exception as exc:
                retry.failed(exc, f"queue {self.queue}: fetching jobs")
                self._wake.set()
                continue
            retry.succeeded()
        connections[self.engine.alias].close()

    def _coalesce(self) -> None:
        """Wait up to :attr:`coalesce` while some of this producer's jobs still run and some
        slots are free, for the rest to finish (each finishing job wakes the producer)."""
        deadline = time.monotonic() + self.coalesce
        while not self._stopping:
            with self._lock:
                running = len(self.running)
            if running == 0 or running >= self.limit:
                return  # every slot free (fetch now), or none (nothing to fetch for)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _dispatch(self) -> None:
        if self.paused:
            return
        with self._lock:
            demand = self.limit - len(self.running)
        if demand <= 0:
            return
        jobs = self.engine.fetch_jobs(self.queue, demand, [self.node, str(self.uuid)],
                                      timezone.now())
        for job in jobs:
            running = Running(job)
            with self._lock:
                self.running[job.pk] = running
                pool = self._pool
            pool.submit(self._execute, running, pool)
        if len(jobs) == demand:
            self._wake.set()  # the queue may hold more: look again at once

    def _execute(self, running: Running, pool: ThreadPoolExecutor) -> None:
        try:
            if self.process_pool is not None and runs_in_process(running.job):
                outcome = self.process_pool.run(running)
            else:
                outcome, _ = execute(running)
        except JobInterrupted:  # delivered outside perform: treat as put back
            outcome = put_back(running.job, timezone.now(), "Interrupted outside perform.")
        except BaseException as exc:
            # The executor never raises for what a job does; if it broke anyway, the attempt
            # still counts (a put-back would run the job again and again, uncounted).
            logger.exception("executing job %s crashed", running.job.pk)
            outcome = failed(running.job, f"The executor crashed: {type(exc).__name__}: {exc}")
        self.acker.push(outcome)
        with self._lock:
            self.running.pop(running.job.pk, None)
        if pool is not self._pool or self._stopping:
            connections.close_all()  # this thread's pool is retired: leave nothing open
        self._wake.set()

    # -- stopping -----------------------------------------------------------------------------

    def stop_fetching(self, wait: bool = True) -> None:
        """Fetch no more jobs; with ``wait``, wait (up to 5 s) for a fetch under way."""
        self._stopping = True
        wakeup.unregister(self.queue, self.wake)
        self._wake.set()
        if wait:
            self._thread.join(5)

    @property
    def fetching(self) -> bool:
        """Whether the fetch loop still runs (it may claim jobs): False once it has stopped
        after :meth:`stop_fetching`."""
        return self._thread.is_alive()

    def interrupt_all(self, exc_type: type[JobInterrupted]) -> list[Running]:
        """Interrupt every running job; return those that were."""
        return [r for r in list(self.running.values()) if r.interrupt(exc_type)]

    def shutdown_pool(self) -> None:
        self._retire(self._pool)

    @staticmethod
    def _retire(pool: ThreadPoolExecutor) -> None:
        """Shut ``pool`` down once each of its threads has closed its database connections
        (a thread still running a job closes them when it finishes, in ``_execute``)."""
        size = pool._max_workers
        barrier = threading.Barrier(size)

        def close() -> None:
            connections.close_all()
            try:  # hold this thread until every idle one has taken its own close task
                barrier.wait(timeout=1.0)
            except threading.BrokenBarrierError:
                pass

        for _ in range(size):
            pool.submit(close)
        pool.shutdown(wait=False)
