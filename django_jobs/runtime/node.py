"""A node: the producers of one ``runjobs`` process, and what keeps them in touch.

The node starts the acker, a producer per queue, the notifier (PostgreSQL), a heartbeat
thread and the leadership thread that runs the plugins while this node is leader.

* Heartbeat (every ``HEARTBEAT`` s): refreshes this node's producer rows, applies pause/resume
  and scale decided elsewhere (the rows are the shared state), stops running jobs that
  were cancelled (``state = 'cancelled'`` in the database), and writes the progress a job
  reported but that throttling held back.
* Queue commands (on each heartbeat, and at once when a control NOTIFY or a call in this
  process announces one): queues started and stopped at run time
  (:class:`~django_jobs.models.QueueCommand`). A stopped queue's producer fetches no more and
  *retires*: it keeps heartbeating until none of its jobs is ``executing`` in the database
  any more (outcomes written), then its row is deleted. Deleting it earlier would let the
  lifeline take its last jobs for a dead node's and run them again.
* Leadership (every ``LEADER_TICK`` s): takes or renews the lease; while leader, sends
  :data:`~django_jobs.signals.leader_tick`, whose receivers are the plugins (each runs when its
  interval has passed). The node knows no plugin: they hold their own options and are
  connected to the signal by the app (see :mod:`django_jobs.plugins`).
* Stop: producers stop fetching; running jobs get ``grace`` seconds; the ones still running are
  interrupted and put back to ``available``; outcomes are written; producer rows and the lease
  are released. Nothing stays ``executing``.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
import uuid
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import signals
from ..engines import get_engine, wakeup
from ..execution.executor import put_back
from ..execution.interrupt import NodeShutdown
from ..models import Job, JobState, Producer as ProducerRow, QueueCommand
from .acker import Acker
from .process_pool import ProcessPool, process_pool_options
from .producer import Producer
from .retry import Retry

logger = logging.getLogger("django_jobs.node")

HEARTBEAT = 1.0
WATCHDOG_TICK = 0.05
LEADER_TICK = 0.5
LEASE = 10.0
LEADER_NAME = "django_jobs"

#: Nodes running in this process (for local queue control).
local_nodes: list[Node] = []


class Node:
    def __init__(self, *, queues: dict[str, int], name: str | None = None, plugins: bool = True,
                 grace: float = 15.0, poll_interval: float | None = None,
                 alias: str | None = None) -> None:
        self.engine = get_engine(alias)
        self.name = name or socket.gethostname()
        self.grace = grace
        if poll_interval is None:
            poll_interval = 1.0 if self.engine.has_listen_notify else 0.2
        self.poll_interval = poll_interval
        self.acker = Acker(self.engine)
        #: Job processes of the workers with ``executor = "process"`` (started on first use).
        self.process_pool = ProcessPool(**process_pool_options())
        #: The producers fetching, by queue. Replaced, never changed in place, when a queue is
        #: started or stopped, so other threads may iterate over it without a lock.
        self.producers: dict[str, Producer] = {
            queue: self._new_producer(queue, limit) for queue, limit in queues.items()}
        #: Producers of stopped queues whose last jobs have not finished yet (replaced, never
        #: changed in place, like ``producers``).
        self.retiring: list[Producer] = []
        #: Whether this node may lead (and so run the plugins).
        self.leads = plugins
        self.is_leader = False
        #: Who holds the lease: the node name plus this process's id, so that two processes
        #: given the same node name never both lead.
        self.lease_holder = f"{self.name}:{uuid.uuid4().hex[:8]}"
        self.notifier = None
        if self.engine.has_listen_notify:
            from .notifier import Notifier  # psycopg: only imported where it is installed

            self.notifier = Notifier(self.engine.alias, self._on_insert, self.control)
        self._stopping = threading.Event()
        #: Set to have the heartbeat thread read the queue commands now.
        self._poke = threading.Event()
        #: Held while queue commands are applied, and to mark the node stopping: a queue is
        #: never started after ``stop`` looked at the producers to stop them.
        self._commands_lock = threading.Lock()
        #: Commands with ids up to this one predate this node; ids of the newer ones already
        #: read (applied, or meant for other nodes).
        self._command_mark = 0
        self._commands_seen: set[int] = set()
        self._threads: list[threading.Thread] = []
        #: (paused, limit) of each producer row as last read by the heartbeat; it starts as
        #: what this node writes at start.
        self._row_state: dict[Any, tuple[bool, int]] = {
            p.uuid: (p.paused, p.limit) for p in self.producers.values()}

    # -- life cycle ---------------------------------------------------------------------------

    def _new_producer(self, queue: str, limit: int) -> Producer:
        return Producer(engine=self.engine, node=self.name, queue=queue, limit=limit,
                        acker=self.acker, poll_interval=self.poll_interval,
                        process_pool=self.process_pool)

    def all_producers(self) -> list[Producer]:
        """The producers fetching and those retiring (stopped, jobs still running)."""
        return [*self.producers.values(), *self.retiring]

    def start(self) -> None:
        self._command_mark = QueueCommand.objects.using(self.engine.alias).last_id()
        now = timezone.now()
        ProducerRow.objects.using(self.engine.alias).bulk_create([
            ProducerRow(uuid=p.uuid, node=self.name, queue=p.queue, limit=p.limit,
                        started_at=now, heartbeat_at=now)
            for p in self.producers.values()])
        self.acker.start()
        for producer in self.producers.values():
            producer.start()
        if self.notifier:
            self.notifier.start()
        self._spawn(self._heartbeat_loop, "heartbeat")
        self._spawn(self._watchdog_loop, "watchdog")
        if self.leads:
            self._take_lease()
            self._spawn(self._leader_loop, "leader")
        local_nodes.append(self)
        for producer in self.producers.values():
            producer.wake()

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=f"django_jobs-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop gracefully; see the module docstring. Blocks for at most ``grace`` + a few s."""
        if self._stopping.is_set():
            return
        logger.info("node %s stopping: waiting up to %g s for %d running jobs", self.name,
                    self.grace, self.running_count())
        with self._commands_lock:
            self._stopping.set()
        self._poke.set()
        for producer in self.all_producers():
            producer.stop_fetching()
        deadline = time.monotonic() + self.grace
        while self.running_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        leftovers = []
        for producer in self.all_producers():
            leftovers += producer.interrupt_all(NodeShutdown)
        if leftovers:
            logger.warning("node %s: %d jobs still running after the grace period were "
                           "interrupted and put back", self.name, len(leftovers))
            settle = time.monotonic() + 2.0
            while self.running_count() and time.monotonic() < settle:
                time.sleep(0.02)
        # Jobs blocked in C code that did not stop: put them back ourselves.
        now = timezone.now()
        for producer in self.all_producers():
            for running in list(producer.running.values()):
                self.acker.push(put_back(running.job, now, "Interrupted: the node shut down "
                                         "before the job finished."))
            producer.shutdown_pool()
        self.process_pool.close()
        self.acker.stop(30)
        if self.notifier:
            self.notifier.stop()
        for thread in self._threads:
            thread.join(3)
        try:
            ProducerRow.objects.using(self.engine.alias).filter(
                uuid__in=[p.uuid for p in self.all_producers()]).delete()
            if self.is_leader:
                self.engine.resign_leadership(LEADER_NAME, self.lease_holder)
                self.is_leader = False
                signals.leadership_changed.send(self, node=self.name, leader=False)
        except Exception:
            logger.exception("node %s: releasing producer rows failed", self.name)
        if self in local_nodes:
            local_nodes.remove(self)
        connections.close_all()
        logger.info("node %s stopped", self.name)

    def running_count(self) -> int:
        return sum(len(p.running) for p in self.all_producers())

    # -- announcements ------------------------------------------------------------------------

    def _on_insert(self, queue: str) -> None:
        # Everyone in this process waiting for jobs of the queue: its producer, and work that
        # gathers jobs as they come (a chunk's leader).
        wakeup.wake_local([queue])

    def control(self, message: dict) -> None:
        """Apply a control message: ``{"action": "pause"|"resume"|"scale"|"cancel", ...}``, or
        ``{"action": "queues"}``: queue commands were recorded, read them now."""
        action = message.get("action")
        if action == "queues":
            self._poke.set()
            return
        if message.get("node") not in (None, self.name):
            return
        if action == "cancel":
            for producer in self.all_producers():
                producer.cancel(int(message["job_id"]))
            return
        queue = message.get("queue")
        targets = [self.producers[queue]] if queue in self.producers else (
            list(self.producers.values()) if queue is None else [])
        for producer in targets:
            if action == "pause":
                producer.pause()
            elif action == "resume":
                producer.resume()
            elif action == "scale":
                producer.scale(int(message["limit"]))

    # -- timeouts -----------------------------------------------------------------------------

    def _watchdog_loop(self) -> None:
        """Stop jobs that run past their ``timeout``: checked every WATCHDOG_TICK s while a
        running job has a deadline, every half second otherwise (an idle node stays idle)."""
        tick = WATCHDOG_TICK
        while not self._stopping.wait(tick):
            now = time.monotonic()
            tick = 0.5
            for producer in self.all_producers():
                for running in list(producer.running.values()):
                    if running.deadline is None:
                        continue
                    tick = WATCHDOG_TICK
                    if now >= running.deadline:
                        running.interrupt(running.deadline_kind)

    # -- heartbeat ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        # The wait after a failure stays short (at most HEARTBEAT more): a node that misses
        # heartbeats for RESCUE_AFTER seconds has its running jobs rescued by the leader.
        retry = Retry(logger, alias=self.engine.alias, is_busy=self.engine.is_busy,
                      cap=HEARTBEAT, stop=self._stopping)
        next_beat = time.monotonic() + HEARTBEAT
        while True:
            # Woken early by a poke (queue commands announced); a beat is due every HEARTBEAT.
            self._poke.wait(max(0.0, next_beat - time.monotonic()))
            self._poke.clear()
            if self._stopping.is_set():
                break
            try:
                self._apply_commands()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT
                    self._heartbeat()
            except Exception as exc:
                retry.failed(exc, f"node {self.name}: heartbeat")
                next_beat = time.monotonic() + HEARTBEAT
                continue
            retry.succeeded()
        connections[self.engine.alias].close()

    def _heartbeat(self) -> None:
        rows = ProducerRow.objects.using(self.engine.alias)
        by_uuid = {p.uuid: p for p in self.producers.values()}
        retiring = {p.uuid: p for p in self.retiring}
        now = timezone.now()
        # Retiring producers heartbeat too: the lifeline must not take their last jobs.
        rows.filter(uuid__in=[*by_uuid, *retiring]).update(heartbeat_at=now)
        seen = set(rows.filter(uuid__in=list(retiring)).values_list("uuid", flat=True))
        for key, paused, limit in rows.filter(uuid__in=list(by_uuid)).values_list(
                "uuid", "paused", "limit"):
            seen.add(key)
            producer = by_uuid[key]
            # Apply only what changed in the row since the last heartbeat: a pause or scale
            # that reached the producer directly (control NOTIFY, local call) after this read
            # must not be undone by the value read just before it.
            if self._row_state.get(key) != (paused, limit):
                self._row_state[key] = (paused, limit)
                producer.pause() if paused else producer.resume()
                producer.scale(limit)
        missing = [p for u, p in [*by_uuid.items(), *retiring.items()] if u not in seen]
        if missing:  # a row was deleted (e.g. pruned as dead during an outage): write it anew
            rows.bulk_create([self._row(p, now) for p in missing], ignore_conflicts=True)
        running = {pk: p for p in self.all_producers() for pk in list(p.running)}
        if running:
            cancelled = Job.objects.using(self.engine.alias).filter(
                pk__in=list(running), state=JobState.CANCELLED).values_list("pk", flat=True)
            for pk in cancelled:
                if running[pk].cancel(pk):
                    logger.info("job %s cancelled while executing", pk)
            # Progress a job reported too soon after its previous write (reports are
            # throttled) and has not reported since: written now, not at the job's end.
            for producer in self.all_producers():
                for attempt in list(producer.running.values()):
                    if attempt.progress is not None and attempt.progress.due():
                        attempt.progress.flush()
        self._retire_finished()

    def _row(self, producer: Producer, now) -> ProducerRow:
        return ProducerRow(uuid=producer.uuid, node=self.name, queue=producer.queue,
                           limit=producer.limit, paused=producer.paused,
                           meta={"stopping": True} if producer in self.retiring else {},
                           started_at=producer.started_at, heartbeat_at=now)

    # -- queues started and stopped at run time ----------------------------------------------

    def _apply_commands(self) -> None:
        """Apply the queue commands recorded since this node started that it has not read
        yet, oldest first. Ids are read as a set, not from a high-water mark: on PostgreSQL
        a command's id is taken before its transaction commits, so a command may become
        visible after a newer one."""
        commands = list(QueueCommand.objects.using(self.engine.alias)
                        .filter(id__gt=self._command_mark).order_by("id"))
        with self._commands_lock:
            if self._stopping.is_set():
                return
            for command in commands:
                if command.id in self._commands_seen or not command.applies_to(self.name):
                    continue
                if command.action == QueueCommand.Action.START:
                    self.start_queue(command.queue, command.limit)
                else:
                    self.stop_queue(command.queue)
                self._commands_seen.add(command.id)
            # Those deleted since (older than the TTL) are no longer read: forget them.
            self._commands_seen &= {command.id for command in commands}

    def start_queue(self, queue: str, limit: int) -> None:
        """Run ``queue`` on this node with ``limit``; a queue already running takes the new
        limit (its pause state stays). Called by the heartbeat thread (queue commands)."""
        rows = ProducerRow.objects.using(self.engine.alias)
        producer = self.producers.get(queue)
        if producer is not None:
            producer.scale(limit)
            rows.filter(uuid=producer.uuid).update(limit=limit)
            self._row_state[producer.uuid] = (producer.paused, limit)
            return
        producer = self._new_producer(queue, limit)
        # The row first: a producer's row exists before it claims anything (the lifeline
        # relies on it).
        rows.create(uuid=producer.uuid, node=self.name, queue=queue, limit=limit,
                    started_at=producer.started_at, heartbeat_at=timezone.now())
        self._row_state[producer.uuid] = (False, limit)
        producer.start()
        self.producers = {**self.producers, queue: producer}
        logger.info("queue %s started on %s with limit %d", queue, self.name, limit)
        producer.wake()

    def stop_queue(self, queue: str) -> None:
        """Stop fetching jobs of ``queue`` on this node; its producer retires once its jobs
        have finished (see the module docstring). Called by the heartbeat thread."""
        producer = self.producers.get(queue)
        if producer is None:
            return
        self.producers = {q: p for q, p in self.producers.items() if q != queue}
        self.retiring = [*self.retiring, producer]
        producer.stop_fetching(wait=False)
        ProducerRow.objects.using(self.engine.alias).filter(uuid=producer.uuid).update(
            meta={"stopping": True})
        logger.info("queue %s stopping on %s: %d jobs running", queue, self.name,
                    len(producer.running))
        self._retire_finished()

    def _retire_finished(self) -> None:
        """Drop the retiring producers whose jobs are over: their fetch loop has stopped, they
        run nothing, and no job they claimed is still ``executing`` in the database (its
        outcome may wait in the acker a moment longer than the job)."""
        for producer in self.retiring:
            if producer.fetching or producer.running:
                continue
            # Served by the partial index on executing jobs (one queue's).
            if Job.objects.using(self.engine.alias).filter(
                    state=JobState.EXECUTING, queue=producer.queue,
                    attempted_by__1=str(producer.uuid)).exists():
                continue
            ProducerRow.objects.using(self.engine.alias).filter(uuid=producer.uuid).delete()
            self.retiring = [p for p in self.retiring if p is not producer]
            self._row_state.pop(producer.uuid, None)
            producer.shutdown_pool()
            logger.info("queue %s stopped on %s", producer.queue, self.name)

    # -- leadership ---------------------------------------------------------------------------

    def _take_lease(self) -> None:
        now = timezone.now()
        leader = self.engine.acquire_leadership(LEADER_NAME, self.lease_holder, now,
                                                now + datetime.timedelta(seconds=LEASE))
        if leader != self.is_leader:
            self.is_leader = leader
            logger.info("node %s %s leader", self.name, "became" if leader else "is no longer")
            signals.leadership_changed.send(self, node=self.name, leader=leader)

    def _leader_loop(self) -> None:
        # The wait after a failure stays below the lease's renewal period (LEASE / 5), so
        # that a leader renews its lease in time once the database answers again.
        retry = Retry(logger, alias=self.engine.alias, is_busy=self.engine.is_busy,
                      cap=LEASE / 5, stop=self._stopping)
        last_lease = 0.0
        while not self._stopping.wait(LEADER_TICK):
            try:
                if time.monotonic() - last_lease >= LEASE / 5:
                    self._take_lease()
                    last_lease = time.monotonic()
                if self.is_leader:
                    self._lead()
            except Exception as exc:
                last_lease = 0.0
                retry.failed(exc, f"node {self.name}: leadership")
                continue
            retry.succeeded()
        connections[self.engine.alias].close()

    def _lead(self) -> None:
        """One tick of leadership: every receiver of ``leader_tick`` (the plugins) gets it; one
        that fails is logged and never stops the others."""
        failed = False
        for receiver, response in signals.leader_tick.send_robust(
                self, node=self, engine=self.engine, now=timezone.now()):
            if isinstance(response, Exception):
                failed = True
                logger.error("node %s: leader work %r failed: %r", self.name,
                             getattr(receiver, "name", receiver), response,
                             exc_info=(type(response), response, response.__traceback__))
        if failed:  # a connection left in a failed transaction must not serve the next tick
            connections[self.engine.alias].close()
