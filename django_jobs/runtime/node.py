"""A node: the producers of one ``runjobs`` process, and what keeps them in touch.

The node starts the acker, a producer per queue, the notifier (PostgreSQL), a heartbeat
thread and the leadership thread that runs the plugins while this node is leader.

* Heartbeat (every ``HEARTBEAT`` s): refreshes this node's producer rows, applies pause/resume
  and scale decided elsewhere (the rows are the shared state), and stops running jobs that
  were cancelled (``state = 'cancelled'`` in the database).
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
from ..models import Job, JobState, Producer as ProducerRow
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
        self.acker = Acker(self.engine)
        #: Job processes of the workers with ``executor = "process"`` (started on first use).
        self.process_pool = ProcessPool(**process_pool_options())
        self.producers = {
            queue: Producer(engine=self.engine, node=self.name, queue=queue, limit=limit,
                            acker=self.acker, poll_interval=poll_interval,
                            process_pool=self.process_pool)
            for queue, limit in queues.items()
        }
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
        self._threads: list[threading.Thread] = []
        #: (paused, limit) of each producer row as last read by the heartbeat; it starts as
        #: what this node writes at start.
        self._row_state: dict[Any, tuple[bool, int]] = {
            p.uuid: (p.paused, p.limit) for p in self.producers.values()}

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
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
        self._stopping.set()
        for producer in self.producers.values():
            producer.stop_fetching()
        deadline = time.monotonic() + self.grace
        while self.running_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        leftovers = []
        for producer in self.producers.values():
            leftovers += producer.interrupt_all(NodeShutdown)
        if leftovers:
            logger.warning("node %s: %d jobs still running after the grace period were "
                           "interrupted and put back", self.name, len(leftovers))
            settle = time.monotonic() + 2.0
            while self.running_count() and time.monotonic() < settle:
                time.sleep(0.02)
        # Jobs blocked in C code that did not stop: put them back ourselves.
        now = timezone.now()
        for producer in self.producers.values():
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
                uuid__in=[p.uuid for p in self.producers.values()]).delete()
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
        return sum(len(p.running) for p in self.producers.values())

    # -- announcements ------------------------------------------------------------------------

    def _on_insert(self, queue: str) -> None:
        # Everyone in this process waiting for jobs of the queue: its producer, and work that
        # gathers jobs as they come (a chunk's leader).
        wakeup.wake_local([queue])

    def control(self, message: dict) -> None:
        """Apply a control message: ``{"action": "pause"|"resume"|"scale"|"cancel", ...}``."""
        action = message.get("action")
        if message.get("node") not in (None, self.name):
            return
        if action == "cancel":
            for producer in self.producers.values():
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
            for producer in self.producers.values():
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
        while not self._stopping.wait(HEARTBEAT):
            try:
                self._heartbeat()
            except Exception as exc:
                retry.failed(exc, f"node {self.name}: heartbeat")
                continue
            retry.succeeded()
        connections[self.engine.alias].close()

    def _heartbeat(self) -> None:
        rows = ProducerRow.objects.using(self.engine.alias)
        by_uuid = {p.uuid: p for p in self.producers.values()}
        now = timezone.now()
        rows.filter(uuid__in=list(by_uuid)).update(heartbeat_at=now)
        seen = set()
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
        missing = [p for u, p in by_uuid.items() if u not in seen]
        if missing:  # a row was deleted (e.g. pruned as dead during an outage): write it anew
            rows.bulk_create([ProducerRow(uuid=p.uuid, node=self.name, queue=p.queue,
                                          limit=p.limit, paused=p.paused,
                                          started_at=p.started_at, heartbeat_at=now)
                              for p in missing], ignore_conflicts=True)
        running = {pk: p for p in self.producers.values() for pk in list(p.running)}
        if running:
            cancelled = Job.objects.using(self.engine.alias).filter(
                pk__in=list(running), state=JobState.CANCELLED).values_list("pk", flat=True)
            for pk in cancelled:
                if running[pk].cancel(pk):
                    logger.info("job %s cancelled while executing", pk)

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
