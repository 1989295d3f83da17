"""The panels of the job detail page, in order.

The page renders every registered panel whose context function returns a dict (``None`` hides
the panel for that job). A feature adds its own panel without touching the page's template::

    from django_jobs.admin.panels import register_panel

    register_panel("result", title="Result", order=35,
                   template="admin/django_jobs/panels/result.html",
                   context=lambda request, job: {"result": ...} if has_result(job) else None)

The template receives the job as ``job`` and the dict as ``panel``.
"""

from __future__ import annotations

import datetime
import json
import logging
import pprint
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.template.loader import get_template
from django.urls import reverse
from django.utils.http import urlencode
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from ..models import Batch, Job, JobState
from ..registry import resolve_worker
from ..pro import terms
from ..pro.chain import spec_for as _chain_spec
from ..pro.chain_queries import chain_neighbours
from ..pro.chunk import ChunkWorker, chunk_of
from ..pro.encrypted import SEALED, is_sealed
from ..pro.recorded import NotRecorded, fetch_recorded, recorded_key

logger = logging.getLogger("django_jobs.admin")
#: The template of a panel whose context raised.
BROKEN_PANEL = "admin/django_jobs/panels/broken.html"

PanelContext = Callable[[Any, Any], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    template: str
    context: PanelContext
    order: int = 100


_registry: dict[str, Panel] = {}


def register_panel(name: str, *, title: str, template: str,
                   context: PanelContext | None = None, order: int = 100) -> Panel:
    """Add (or replace) the panel ``name``; panels render by ``order``, then name."""
    panel = Panel(name, title, template, context or (lambda request, job: {}), order)
    _registry[name] = panel
    return panel


def unregister_panel(name: str) -> None:
    _registry.pop(name, None)


def registered_panels() -> list[Panel]:
    return sorted(_registry.values(), key=lambda p: (p.order, p.name))


@dataclass
class RenderedPanel:
    name: str
    title: str
    template: str
    context: dict[str, Any]


def panels_for(request, job) -> list[RenderedPanel]:
    """The panels to show for ``job``, each with its context. A panel whose context raises
    (a row no API writes, a third-party panel's bug) or whose template does not exist shows
    the error instead of breaking the page."""
    shown = []
    for panel in registered_panels():
        try:
            context = panel.context(request, job)
            if context is not None:
                get_template(panel.template)  # cached by the template loaders
        except Exception as exc:
            logger.exception("panel %r of job %s failed", panel.name, job.pk)
            shown.append(RenderedPanel(panel.name, panel.title, BROKEN_PANEL,
                                       {"error": f"{type(exc).__name__}: {exc}"}))
            continue
        if context is not None:
            shown.append(RenderedPanel(panel.name, panel.title, panel.template, context))
    return shown


def relative(value: datetime.datetime, now: datetime.datetime) -> str:
    """How far ``value`` is from ``now``, either way: "3 minutes ago" or "in 10 minutes"."""
    if value > now:
        return f"in {timeuntil(value, now)}"
    return f"{timesince(value, now)} ago"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# -- the built-in panels ---------------------------------------------------------------------

def task_path(job) -> str | None:
    """The dotted path of the ``django.tasks`` task a job runs (the workers of
    django_jobs.tasks keep it in ``meta["task"]``), or None for any other job."""
    meta = job.meta if isinstance(job.meta, dict) else {}
    task = meta.get("task")
    if isinstance(task, str) and job.worker.startswith("django_jobs.tasks."):
        return task
    return None


def _summary(request, job) -> dict[str, Any]:
    node = job.attempted_by[0] if isinstance(job.attempted_by, list) and job.attempted_by \
        else None
    ran_for = None
    if job.attempted_at and job.finished_at and job.finished_at >= job.attempted_at:
        ran_for = (job.finished_at - job.attempted_at).total_seconds()
    elif job.attempted_at and job.state == "executing":
        ran_for = (timezone.now() - job.attempted_at).total_seconds()
    now = timezone.now()
    timings = [(label, value, relative(value, now)) for label, value in (
        ("Inserted", job.inserted_at), ("Scheduled", job.scheduled_at),
        ("Attempted", job.attempted_at), ("Completed", job.completed_at),
        ("Cancelled", job.cancelled_at), ("Discarded", job.discarded_at)) if value]
    producer = job.attempted_by[1] if isinstance(job.attempted_by, list) and \
        len(job.attempted_by) > 1 else None
    return {"node": node, "producer": producer, "ran_for": ran_for, "timings": timings,
            "task": task_path(job)}


def _args(request, job):
    if is_sealed(job.args):
        # Encrypted args: never opened here; the key id is all there is to show.
        return {"encrypted": True, "key": job.args[SEALED].get("key")}
    return {"json": pretty_json(job.args)}


def _meta(request, job):
    meta = job.meta if isinstance(job.meta, dict) else {}
    key = recorded_key(meta)
    if key is not None:  # shown decoded in the result panel
        meta = {**meta, key: "(the recorded result, below)"}
    return {"json": pretty_json(meta)}


def _result(request, job):
    try:
        value = fetch_recorded(job)
    except NotRecorded:
        return None
    except terms.TermError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a damaged or forged row must not break the job's page
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"value": pprint.pformat(value, width=100, sort_dicts=True)}


def _tags(request, job):
    if not job.tags:
        return None
    # A list of strings, as every API writes; anything else shown as its JSON.
    tags = job.tags if isinstance(job.tags, list) else [job.tags]
    return {"tags": [t if isinstance(t, str) else pretty_json(t) for t in tags]}


def _errors(request, job):
    if not job.errors:
        return None
    # Entries {"at", "attempt", "error"}, as every API writes; anything else shown as its JSON.
    entries = job.errors if isinstance(job.errors, list) else [job.errors]
    return {"errors": [e if isinstance(e, dict) else {"error": pretty_json(e)}
                       for e in reversed(entries)]}  # the latest first


def _job_url(request, job) -> str | None:
    site = getattr(request, "current_app", None) or "admin"
    try:
        return reverse(f"{site}:django_jobs_job_change", args=[job.pk])
    except Exception:
        return None


def _chain(request, job):
    meta = job.meta if isinstance(job.meta, dict) else {}
    if not meta.get("chain_id"):
        return None
    before, after = chain_neighbours(job)
    waiting = None
    if job.state == JobState.SUSPENDED:
        if before is None:
            waiting = "its turn: no job before it (the sweep releases it within 30 s)"
        elif before.state in (JobState.DISCARDED, JobState.CANCELLED):
            spec = _chain_spec(job.worker)
            policy = spec and (spec.on_discarded if before.state == JobState.DISCARDED
                               else spec.on_cancelled)
            waiting = (f"held: job {before.pk} was {before.state} (on_{before.state}=hold): "
                       f"retry it to completion, or delete it" if policy == "hold"
                       else f"job {before.pk} was {before.state}; released next")
        else:
            waiting = f"job {before.pk} ({before.state}) to finish"
    return {"chain": meta["chain_id"], "waiting": waiting,
            "previous": before, "previous_url": before and _job_url(request, before),
            "next": after, "next_url": after and _job_url(request, after)}


def _batch(request, job):
    meta = job.meta if isinstance(job.meta, dict) else {}
    batch_id = meta.get("batch_id")
    if not batch_id or not isinstance(batch_id, str):  # what no API writes: not a batch
        return None
    batch = Batch.objects.using(job._state.db or "default").filter(pk=batch_id).first()
    site = getattr(request, "current_app", None) or "admin"
    try:
        url = reverse(f"{site}:django_jobs_batch_change", args=[batch_id])
        members = reverse(f"{site}:django_jobs_job_changelist") + "?" + urlencode(
            {"batch": batch_id})
    except Exception:  # the batch admin is not registered on this site
        url = members = None
    return {"batch_id": batch_id, "batch": batch, "url": url, "members_url": members,
            "callback": meta.get("batch_callback")}


def _chunk(request, job):
    """A member shows the leader whose chunk ran it last; a chunk worker's job that led (or
    will lead) a chunk links to the jobs of its chunk. Nothing is counted here: finding the
    members means reading ``attempted_by``, which no index covers, so it is left to the
    search the link opens."""
    site = getattr(request, "current_app", None) or "admin"
    try:
        search = reverse(f"{site}:django_jobs_job_changelist") + "?q=chunk:"
    except Exception:
        search = None
    leader_id = chunk_of(job)
    if isinstance(leader_id, int) and not isinstance(leader_id, bool):
        leader = Job.objects.using(job._state.db or "default").filter(pk=leader_id).first()
        return {"leader_id": leader_id, "leader": leader,
                "leader_url": leader and _job_url(request, leader),
                "chunk_url": search and f"{search}{leader_id}"}
    try:
        is_chunk = issubclass(resolve_worker(job.worker), ChunkWorker)
    except Exception:  # a worker this process cannot import: the job's page still renders
        return None
    if not is_chunk:
        return None
    return {"leads": job.attempt > 0, "chunk_url": search and f"{search}{job.pk}"}


def _deadline(request, job):
    meta = job.meta if isinstance(job.meta, dict) else {}
    if "deadline_at" not in meta:
        return None
    try:
        at = datetime.datetime.fromisoformat(meta["deadline_at"])
    except (TypeError, ValueError):
        at = None
    if at is None or timezone.is_naive(at):  # what no API writes
        return {"at": None, "raw": meta["deadline_at"]}
    return {"at": at, "force": bool(meta.get("deadline_force")), "passed": at <= timezone.now()}


def _cron(request, job):
    meta = job.meta if isinstance(job.meta, dict) else {}
    if not meta.get("cron"):
        return None
    name = meta.get("cron_name")
    url = None
    if name:
        site = getattr(request, "current_app", None) or "admin"
        try:
            url = reverse(f"{site}:django_jobs_cronentry_changelist") + "?" + urlencode(
                {"q": name})
        except Exception:  # the cron admin is not registered on this site
            url = None
    return {"name": name, "expression": meta.get("cron_expr"), "timezone": meta.get("cron_tz"),
            "slot": meta.get("cron_slot"), "url": url}


register_panel("summary", title="Summary", order=10, context=_summary,
               template="admin/django_jobs/panels/summary.html")
register_panel("errors", title="Errors", order=20, context=_errors,
               template="admin/django_jobs/panels/errors.html")
register_panel("args", title="Args", order=30, context=_args,
               template="admin/django_jobs/panels/args.html")
register_panel("result", title="Recorded result", order=35, context=_result,
               template="admin/django_jobs/panels/result.html")
register_panel("meta", title="Meta", order=40, context=_meta,
               template="admin/django_jobs/panels/json.html")
register_panel("tags", title="Tags", order=50, context=_tags,
               template="admin/django_jobs/panels/tags.html")
register_panel("deadline", title="Deadline", order=15, context=_deadline,
               template="admin/django_jobs/panels/deadline.html")
register_panel("batch", title="Batch", order=54, context=_batch,
               template="admin/django_jobs/panels/batch.html")
register_panel("chain", title="Chain", order=55, context=_chain,
               template="admin/django_jobs/panels/chain.html")
register_panel("chunk", title="Chunk", order=56, context=_chunk,
               template="admin/django_jobs/panels/chunk.html")
register_panel("cron", title="Cron origin", order=60, context=_cron,
               template="admin/django_jobs/panels/cron.html")
