"""The batches page: each batch with a progress bar, its members by state and its handlers
(pending, fired, completed, failed), linking to its members in the job browser.

A page costs a constant number of queries: the batches of the page, and one query for the
states of all their callback jobs (``batch_status`` of many batches at once).
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from ..pro.batch import batch_statuses
from .guards import GuardedAdmin


class BatchAdmin(GuardedAdmin, admin.ModelAdmin):
    list_display = ["batch_id", "progress_bar", "counts", "handlers", "callback_worker",
                    "created_at", "updated_at"]
    list_display_links = ["batch_id"]
    search_fields = ["id", "callback_worker"]
    list_per_page = 50
    show_full_result_count = False
    ordering = ["-created_at"]
    readonly_fields = ["id", "callback_worker", "callback_queue", "callback_args",
                       "callback_meta", "members", "attempted", "completed", "cancelled",
                       "discarded", "retryable", "fired", "callbacks", "created_at",
                       "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger goes with its jobs; delete those in the job browser

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # One query for the callback jobs of every batch on the page.
        statuses = batch_statuses(list(changelist.result_list), changelist.queryset.db)
        for batch in changelist.result_list:
            batch.status = statuses[batch.pk]
        return changelist

    def _status(self, batch):
        status = getattr(batch, "status", None)
        if status is None:
            batch.status = status = batch_statuses([batch], batch._state.db or "default")[batch.pk]
        return status

    @admin.display(description="batch", ordering="id")
    def batch_id(self, batch):
        return batch.pk

    @admin.display(description="progress")
    def progress_bar(self, batch):
        percent = round(batch.progress * 100)
        return format_html(
            '<div class="jobs-progress" title="{} of {} finished">'
            '<div class="jobs-progress-done" style="width: {}%"></div></div> {}%',
            batch.finished, batch.members, percent, percent)

    @admin.display(description="members")
    def counts(self, batch):
        site = self.admin_site.name
        url = reverse(f"{site}:django_jobs_job_changelist") + "?" + urlencode(
            {"batch": batch.pk})
        parts = format_html_join(", ", "{} {}", [
            (value, name) for name, value in self._status(batch).counts.items()
            if value and name != "members"])
        return format_html('<a href="{}">{} members</a>: {}', url, batch.members,
                           parts or "none yet")

    @admin.display(description="handlers")
    def handlers(self, batch):
        return format_html_join(
            " ", '<span class="jobs-badge jobs-handler-{}">{}: {}</span>',
            [(state.split(",")[0].split(" ")[0], name.removeprefix("handle_"), state)
             for name, state in self._status(batch).handlers.items()]) or "-"
