"""The job browser: list, detail page, actions, and the queues and dashboard pages' URLs."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_POST

from .. import control
from ..models import Job, JobState
from ..pro.encrypted import SEALED, is_sealed
from . import dashboard, filters, queues
from .guards import GuardedAdmin
from .paginator import EstimatedCountPaginator
from .panels import panels_for, task_path
from .search import SearchError, search_q

#: The time column of each state: when it will run, when it started, or when it ended.
STATE_TIME = {
    JobState.AVAILABLE: ("scheduled_at", "scheduled"),
    JobState.SCHEDULED: ("scheduled_at", "scheduled"),
    JobState.SUSPENDED: ("scheduled_at", "scheduled"),
    JobState.RETRYABLE: ("scheduled_at", "retry"),
    JobState.EXECUTING: ("attempted_at", "attempted"),
    JobState.COMPLETED: ("completed_at", "completed"),
    JobState.CANCELLED: ("cancelled_at", "cancelled"),
    JobState.DISCARDED: ("discarded_at", "discarded"),
}

RUNNABLE_NOW = (JobState.SCHEDULED, JobState.RETRYABLE)


def _percent_text(percent: float) -> str:
    return f"{percent:.1f}".rstrip("0").rstrip(".")


def _plural(count: int, noun: str = "job") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class JobActions:
    """The job actions, usable from the list (many jobs) and the detail page (one job).

    Each runs through ``django_jobs.control``, so cancelling an executing job stops it on
    whichever node runs it.
    """

    def _report(self, request, verb: str, done: int, selected: int, why: str) -> None:
        skipped = selected - done
        text = f"{verb} {_plural(done)}."
        if skipped:
            text += f" {_plural(skipped)} skipped ({why})."
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Retry selected jobs", permissions=["retry"])
    def retry_jobs(self, request, queryset):
        selected = queryset.count()
        done = control.retry_all_jobs(queryset)
        self._report(request, "Retried", done, selected, "available or executing")

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        selected = queryset.count()
        done = control.cancel_all_jobs(queryset)
        self._report(request, "Cancelled", done, selected, "already finished")

    @admin.action(description="Run selected jobs now", permissions=["run"])
    def run_jobs_now(self, request, queryset):
        selected = queryset.count()
        done = control.retry_all_jobs(queryset.filter(state__in=RUNNABLE_NOW))
        self._report(request, "Made available now:", done, selected,
                     "only scheduled and retryable jobs can be run now")

    @admin.action(description="Delete selected jobs", permissions=["delete"])
    def delete_jobs(self, request, queryset):
        selected = queryset.count()
        done = control.delete_all_jobs(queryset)
        self._report(request, "Deleted", done, selected, "executing: cancel them first")

    def has_retry_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_job")

    def has_cancel_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_job")

    def has_run_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.run_job")

    def has_control_queues_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.control_queues")


class JobAdmin(GuardedAdmin, JobActions, admin.ModelAdmin):
    list_display = ["id", "worker_name", "queue", "state_badge", "attempts", "priority",
                    "relevant_time", "args_preview"]
    list_display_links = ["id", "worker_name"]
    list_filter = [filters.StateFilter, filters.QueueFilter, filters.WorkerFilter,
                   filters.TagFilter, filters.NodeFilter, filters.PriorityFilter,
                   filters.TimeFilter]
    # The search box is ours (get_search_results); a field here only makes Django show it.
    search_fields = ["worker"]
    search_help_text = ("Words match the worker or task; numbers the id. Also args.path:value, "
                        "meta.path:value, worker:, task:, queue:, tag:, state:, node:, chunk:.")
    actions = ["retry_jobs", "cancel_jobs", "run_jobs_now", "delete_jobs"]
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False  # the unfiltered COUNT(*) is what big tables cannot afford
    sortable_by = ["id", "worker_name", "queue", "attempts", "priority", "relevant_time"]
    change_list_template = "admin/django_jobs/job/change_list.html"
    detail_template = "admin/django_jobs/job/detail.html"

    # -- columns ------------------------------------------------------------------------------

    @admin.display(description="worker", ordering="worker")
    def worker_name(self, job):
        task = task_path(job)
        if task is not None:  # a django.tasks task: its function, not the generic worker
            return format_html('<span title="task {} ({})">{} <small>task</small></span>',
                               task, job.worker, task.rpartition(".")[2] or task)
        name = job.worker.rpartition(".")[2]
        return format_html('<span title="{}">{}</span>', job.worker, name or job.worker)

    @admin.display(description="state", ordering="state")
    def state_badge(self, job):
        badge = format_html('<span class="jobs-badge jobs-state-{}">{}</span>', job.state,
                            job.get_state_display())
        percent = job.progress_percent
        if percent is None:  # no progress reported, or not a number: the meta panel shows it
            return badge
        return format_html('{} <span class="jobs-progress" role="progressbar" '
                           'aria-valuemin="0" aria-valuemax="100" aria-valuenow="{}" '
                           'title="progress {}%"><span class="jobs-progress-done" '
                           'style="width: {}%"></span></span>', badge, percent,
                           _percent_text(percent), percent)

    @admin.display(description="attempt", ordering="attempt")
    def attempts(self, job):
        return f"{job.attempt}/{job.max_attempts}"

    @admin.display(description="time",
                   ordering=Coalesce("completed_at", "cancelled_at", "discarded_at",
                                     "attempted_at", "scheduled_at"))
    def relevant_time(self, job):
        field, label = STATE_TIME.get(job.state, ("scheduled_at", "scheduled"))
        value = getattr(job, field)
        if value is None:
            return "-"
        now = timezone.now()
        when = f"in {timeuntil(value, now)}" if value > now else f"{timesince(value, now)} ago"
        return format_html('<span title="{}">{} {}</span>', value.isoformat(), label, when)

    @admin.display(description="args")
    def args_preview(self, job):
        if is_sealed(job.args):
            return format_html('<code class="jobs-args">encrypted (key {})</code>',
                               job.args[SEALED].get("key"))
        text = json.dumps(job.args, ensure_ascii=False, sort_keys=True, default=str)
        return format_html('<code class="jobs-args" title="{}">{}</code>', text,
                           Truncator(text).chars(80))

    # -- read-only ----------------------------------------------------------------------------

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        # Django's own delete view: through control, like every other change of a job.
        control.delete_job(obj)

    def delete_queryset(self, request, queryset):
        control.delete_all_jobs(queryset)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # delete_jobs keeps executing jobs
        return actions

    # -- search -------------------------------------------------------------------------------

    #: ``?batch=ID`` lists a batch's members (the batch pages link there); see GuardedAdmin.
    url_lookups = frozenset({"batch", "chain", "id"})

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        try:
            return queryset.filter(search_q(search_term)), False
        except SearchError as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return queryset.none(), False

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), **self.page_links(request)}
        return super().changelist_view(request, extra_context)

    def page_links(self, request) -> dict:
        site = self.admin_site.name
        info = f"{site}:{self.opts.app_label}_{self.opts.model_name}"
        return {"jobs_url": reverse(f"{info}_changelist"),
                "queues_url": reverse(f"{info}_queues"),
                "dashboard_url": reverse(f"{info}_dashboard")}

    # -- detail page --------------------------------------------------------------------------

    def detail_actions(self, request, job) -> list[dict]:
        """The buttons of the detail page: the actions this user may take on this job."""
        possible = [
            ("retry", "Retry", self.has_retry_permission(request),
             job.state not in (JobState.AVAILABLE, JobState.EXECUTING)),
            ("run", "Run now", self.has_run_permission(request), job.state in RUNNABLE_NOW),
            ("cancel", "Cancel", self.has_cancel_permission(request),
             job.state not in (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)),
            ("delete", "Delete", self.has_delete_permission(request, job),
             job.state != JobState.EXECUTING),
        ]
        info = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}"
        return [{"name": name, "label": label,
                 "url": reverse(f"{info}_act", args=[job.pk, name])}
                for name, label, allowed, applies in possible if allowed and applies]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, unquote(object_id))
        if job is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, job):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            **self.page_links(request),
            "title": f"Job {job.pk}",
            "subtitle": (f"task {task_path(job)} ({job.worker})" if task_path(job)
                         else job.worker),
            "opts": self.opts,
            "original": job,
            "job": job,
            "panels": panels_for(request, job),
            "job_actions": self.detail_actions(request, job),
            "has_view_permission": True,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.detail_template, context)

    def act_view(self, request, object_id, name):
        """POST <id>/act/<name>/: one action on one job, then back to its page."""
        job = self.get_object(request, unquote(object_id))
        if job is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        action = {"retry": self.retry_jobs, "cancel": self.cancel_jobs,
                  "run": self.run_jobs_now, "delete": self.delete_jobs}.get(name)
        checks = {"retry": self.has_retry_permission, "cancel": self.has_cancel_permission,
                  "run": self.has_run_permission, "delete": self.has_delete_permission}
        if action is None or not checks[name](request):
            raise PermissionDenied
        action(request, Job.objects.filter(pk=job.pk))
        info = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}"
        if name == "delete" and not Job.objects.filter(pk=job.pk).exists():
            return HttpResponseRedirect(reverse(f"{info}_changelist"))
        return HttpResponseRedirect(reverse(f"{info}_change", args=[job.pk]))

    def delete_view(self, request, object_id, extra_context=None):
        job = self.get_object(request, unquote(object_id))
        if job is not None and job.state == JobState.EXECUTING:
            self.message_user(request, f"Job {job.pk} is executing: cancel it first.",
                              messages.ERROR)
            info = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}"
            return HttpResponseRedirect(reverse(f"{info}_change", args=[job.pk]))
        return super().delete_view(request, object_id, extra_context)

    # -- extra pages --------------------------------------------------------------------------

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("queues/", wrap(self.queues_view), name=f"{info}_queues"),
            path("dashboard/", wrap(self.dashboard_view), name=f"{info}_dashboard"),
            path("<path:object_id>/act/<str:name>/", wrap(require_POST(self.act_view)),
                 name=f"{info}_act"),
            *super().get_urls(),
        ]

    def queues_view(self, request):
        return queues.queues_view(self, request)

    def dashboard_view(self, request):
        return dashboard.dashboard_view(self, request)
