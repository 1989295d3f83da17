"""Steering queues and jobs from anywhere: a shell, a view, the admin, ``manage.py jobs``.

Queue state lives in the producer rows (one per queue per node): pausing, resuming and scaling
update those rows, and every node applies its rows on its next heartbeat (about a second), or
at once on PostgreSQL, where a control NOTIFY is sent too. ``node=`` limits an operation to
one node; ``local=True`` to the nodes running in this process. Starting and stopping a queue
are recorded as :class:`~django_jobs.models.QueueCommand` rows (a queue being started has no
producer row yet), which nodes read the same way.

Job operations act on the database and return how many jobs they changed; cancelling an
executing job also stops it on the node that runs it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from .build import validate_queue
from .engines import get_engine
from .exceptions import InvalidJobError
from .models import FINISHED_STATES, Job, JobState, Producer, QueueCommand
from .runtime import node as runtime_node
from .transitions import transition

#: States a job can be cancelled from, retried from and deleted from.
CANCELLABLE = tuple(s for s in JobState.values if s not in FINISHED_STATES)
RETRYABLE_FROM = tuple(s for s in JobState.values
                       if s not in (JobState.AVAILABLE, JobState.EXECUTING))
DELETABLE = tuple(s for s in JobState.values if s != JobState.EXECUTING)


def _producers(queue: str | None, node: str | None, local: bool) -> QuerySet:
    engine = get_engine()
    rows = Producer.objects.using(engine.alias)
    if queue is not None:
        rows = rows.filter(queue=validate_queue(queue))
    if node is not None:
        rows = rows.filter(node=node)
    if local:
        rows = rows.filter(uuid__in=[p.uuid for n in runtime_node.local_nodes
                                     for p in n.producers.values()])
    return rows


def _announce(message: dict, local: bool) -> None:
    """Apply ``message`` to the nodes of this process now, and to the others via NOTIFY."""
    for node in list(runtime_node.local_nodes):
        node.control(message)
    if not local:
        get_engine().announce(message)


def pause_queue(queue: str, *, node: str | None = None, local: bool = False) -> int:
    """Stop fetching new jobs of ``queue`` (running jobs finish). Returns producers changed."""
    count = _producers(queue, node, local).update(paused=True)
    _announce({"action": "pause", "queue": queue, "node": node}, local)
    return count


def resume_queue(queue: str, *, node: str | None = None, local: bool = False) -> int:
    """Start fetching jobs of ``queue`` again. Returns producers changed."""
    count = _producers(queue, node, local).update(paused=False)
    _announce({"action": "resume", "queue": queue, "node": node}, local)
    return count


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidJobError(f"limit must be an integer of at least 1, not {limit!r}")
    return limit


def scale_queue(queue: str, limit: int, *, node: str | None = None, local: bool = False) -> int:
    """Run up to ``limit`` jobs of ``queue`` at once on each node. Returns producers changed."""
    _check_limit(limit)
    count = _producers(queue, node, local).update(limit=limit)
    _announce({"action": "scale", "queue": queue, "limit": limit, "node": node}, local)
    return count


def start_queue(queue: str, limit: int, *, node: str | None = None) -> int:
    """Start running ``queue``, up to ``limit`` jobs at once, on every running node, or on the
    nodes named ``node``; each applies it within about a second (at once on PostgreSQL).

    A node that already runs ``queue`` takes the new limit, like :func:`scale_queue` (a paused
    queue stays paused). A started queue lasts until it is stopped or its node stops: a node
    that starts (or restarts) runs what its settings and ``--queue`` say. A ``node`` name that
    no running node has is not an error (a node that runs no queue is unknown to the database,
    yet it applies the command): the return value tells. Returns the number of running nodes
    the command reaches, counted from the producer rows (nodes that run no queue are not
    counted).
    """
    queue = validate_queue(queue)
    _check_limit(limit)
    node = _check_node(node)
    rows = Producer.objects.using(get_engine().alias)
    if node:
        rows = rows.filter(node=node)
    # Counted before the command is recorded: nodes may apply it at once.
    reached = rows.order_by().values("node").distinct().count()
    _record(QueueCommand.Action.START, queue, node, limit)
    return reached


def stop_queue(queue: str, *, node: str | None = None) -> int:
    """Stop running ``queue`` on every node, or on the nodes named ``node``: within about a
    second they fetch no more of its jobs; the jobs running finish (a node that shuts down
    meanwhile puts them back as usual), then the queue's producer and its row go away.

    Jobs of ``queue`` stay in the database: nodes that still run the queue (or start it later)
    run them. Returns the number of producers that stop (none: no running node ran it).
    """
    queue = validate_queue(queue)
    node = _check_node(node)
    # Counted before the command is recorded (nodes may apply it at once, and the rows go),
    # and in Python: a JSON key test in SQL treats a missing key differently per database.
    stopping = sum(1 for meta in _producers(queue, node or None, False).values_list(
        "meta", flat=True) if not (isinstance(meta, dict) and meta.get("stopping") is True))
    _record(QueueCommand.Action.STOP, queue, node, None)
    return stopping


def _check_node(node: str | None) -> str:
    if node is None:
        return ""
    if not isinstance(node, str) or not node.strip():
        raise InvalidJobError(f"node must be a node name or None, not {node!r}")
    return node


def _record(action: str, queue: str, node: str, limit: int | None) -> None:
    """Write the command for nodes to read, forgetting those older than the TTL, and wake the
    nodes (NOTIFY on PostgreSQL, those of this process directly)."""
    engine = get_engine()
    now = timezone.now()
    commands = QueueCommand.objects.using(engine.alias)
    with transaction.atomic(using=engine.alias):
        commands.filter(created_at__lt=now - datetime.timedelta(seconds=QueueCommand.TTL)
                        ).delete()
        commands.create(action=action, queue=queue, node=node, limit=limit, created_at=now)
    # The command's details are in its row: the message only says "read the commands".
    _announce({"action": "queues"}, local=False)


def _queryset(jobs: QuerySet | Iterable[int | Job]) -> QuerySet:
    manager = Job.objects.using(get_engine().alias)
    if isinstance(jobs, QuerySet):
        return jobs.using(get_engine().alias)
    return manager.filter(pk__in=[job.pk if isinstance(job, Job) else int(job) for job in jobs])


def cancel_all_jobs(jobs: QuerySet | Iterable[int | Job]) -> int:
    """Cancel jobs that have not finished; executing ones are stopped where they run."""
    engine = get_engine()
    with transaction.atomic(using=engine.alias):
        target = _queryset(jobs)
        executing = list(target.filter(state=JobState.EXECUTING).values_list("pk", flat=True))
        count = transition(target, JobState.CANCELLED, only_from=CANCELLABLE,
                           interrupting=True, using=engine.alias)
        for pk in executing:
            _announce({"action": "cancel", "job_id": pk}, local=False)
    return count


def cancel_job(job: int | Job) -> bool:
    return cancel_all_jobs([job]) == 1


def retry_all_jobs(jobs: QuerySet | Iterable[int | Job]) -> int:
    """Make finished, retryable, scheduled or suspended jobs available now (not executing
    ones). A job out of attempts gets one more (``max_attempts`` is raised to
    ``attempt + 1``)."""
    engine = get_engine()
    with transaction.atomic(using=engine.alias):
        target = _queryset(jobs)
        count = transition(target, JobState.AVAILABLE, only_from=RETRYABLE_FROM, columns={
            "scheduled_at": timezone.now(),
            "max_attempts": Greatest(F("max_attempts"), F("attempt") + 1)}, using=engine.alias)
    return count


def retry_job(job: int | Job) -> bool:
    return retry_all_jobs([job]) == 1


def delete_all_jobs(jobs: QuerySet | Iterable[int | Job]) -> int:
    """Delete jobs that are not executing (cancel those first)."""
    engine = get_engine()
    return transition(_queryset(jobs), None, only_from=DELETABLE, using=engine.alias)


def delete_job(job: int | Job) -> bool:
    return delete_all_jobs([job]) == 1
