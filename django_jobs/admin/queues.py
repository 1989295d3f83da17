"""The queues page: per queue, jobs by state and each node's limit, running count and pause
state; pause, resume, scale, start and stop buttons that reach every node
(``django_jobs.control``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.db.models.fields.json import KT
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from .. import control
from ..conf import jobs_settings
from ..exceptions import JobsError
from ..models import Job, JobState, Producer


@dataclass
class NodeRow:
    node: str
    limit: int
    paused: bool
    running: int
    heartbeat_at: object
    #: The queue was stopped on this node; its last jobs are finishing.
    stopping: bool = False


@dataclass
class QueueRow:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    nodes: list[NodeRow] = field(default_factory=list)

    @property
    def state_counts(self) -> list[tuple[str, str, int]]:
        return [(state, label, self.counts.get(state, 0)) for state, label in JobState.choices]

    @property
    def paused(self) -> bool:
        """Paused on every node that runs it (and running somewhere)."""
        return bool(self.nodes) and all(n.paused for n in self.nodes)

    @property
    def partly_paused(self) -> bool:
        return any(n.paused for n in self.nodes) and not self.paused

    @property
    def running(self) -> int:
        return sum(n.running for n in self.nodes)

    @property
    def limit(self) -> int:
        return sum(n.limit for n in self.nodes if not n.stopping)

    @property
    def stopping(self) -> bool:
        """Stopped on every node that ran it, some jobs still finishing."""
        return bool(self.nodes) and all(n.stopping for n in self.nodes)


def queue_rows() -> list[QueueRow]:
    """Every queue with jobs, producers or settings: three queries whatever their number."""
    rows: dict[str, QueueRow] = {}

    def row(name: str) -> QueueRow:
        return rows.setdefault(name, QueueRow(name))

    for name in jobs_settings.QUEUES or {}:
        row(name)
    # Served by the (state, queue) index.
    for queue, state, n in Job.objects.order_by().values_list("queue", "state").annotate(
            n=Count("pk")):
        row(queue).counts[state] = n
    # Served by the partial index on executing jobs.
    # Counted by producer (attempted_by[1]), not node name: the worker processes of one
    # `runjobs --processes N` share their node's name, each with its own producers and limits.
    running = {(queue, producer): n for queue, producer, n in Job.objects.filter(
        state=JobState.EXECUTING).order_by().values_list(
        "queue", KT("attempted_by__1")).annotate(n=Count("pk"))}
    for producer in Producer.objects.order_by("queue", "node"):
        row(producer.queue).nodes.append(NodeRow(
            producer.node, producer.limit, producer.paused,
            running.get((producer.queue, str(producer.uuid)), 0), producer.heartbeat_at,
            stopping=isinstance(producer.meta, dict) and producer.meta.get("stopping") is True))
    return sorted(rows.values(), key=lambda r: r.name)


def queues_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    request.current_app = model_admin.admin_site.name
    can_control = model_admin.has_control_queues_permission(request)
    if request.method == "POST":
        if not can_control:
            raise PermissionDenied
        apply_control(model_admin, request)
        return HttpResponseRedirect(request.get_full_path())
    context = {
        **model_admin.admin_site.each_context(request),
        **model_admin.page_links(request),
        "title": "Queues",
        "opts": model_admin.opts,
        "queues": queue_rows(),
        "states": JobState.choices,
        "can_control": can_control,
    }
    return TemplateResponse(request, "admin/django_jobs/job/queues.html", context)


def apply_control(model_admin, request) -> None:
    queue = request.POST.get("queue", "")
    action = request.POST.get("action")
    node = request.POST.get("node") or None
    where = f" on {node}" if node else " on every node"
    try:
        if action == "pause":
            count = control.pause_queue(queue, node=node)
            text = f"Paused queue {queue!r}{where} ({count} producers)."
        elif action == "resume":
            count = control.resume_queue(queue, node=node)
            text = f"Resumed queue {queue!r}{where} ({count} producers)."
        elif action == "scale":
            limit = _limit(request)
            count = control.scale_queue(queue, limit, node=node)
            text = f"Scaled queue {queue!r} to {limit}{where} ({count} producers)."
        elif action == "start":
            limit = _limit(request)
            count = control.start_queue(queue, limit, node=node)
            text = (f"Starting queue {queue!r} with limit {limit}{where} ({count} running "
                    f"nodes{'' if count else ': none is running under that name now'}).")
        elif action == "stop":
            count = control.stop_queue(queue, node=node)
            text = (f"Stopping queue {queue!r}{where} ({count} producers): running jobs "
                    f"finish, no more are fetched.")
        else:
            raise JobsError(f"unknown queue action {action!r}")
    except (JobsError, ValueError) as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return
    model_admin.message_user(request, text, messages.SUCCESS)



def _limit(request) -> int:
    raw = request.POST.get("limit", "")
    try:
        return int(raw)
    except ValueError:
        raise JobsError(f"limit must be a whole number, not {raw!r}") from None
