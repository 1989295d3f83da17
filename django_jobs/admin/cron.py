"""The cron page: settings and database entries, next and last run in each entry's time zone,
pause and resume; database entries are edited here (``CronEntry.clean`` validates them)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from ..models import CronSource
from .guards import GuardedAdmin


class CronEntryAdmin(GuardedAdmin, admin.ModelAdmin):
    list_display = ["name", "expression", "timezone", "worker", "source", "next_run",
                    "last_run", "paused"]
    list_filter = ["paused", "source"]
    search_fields = ["name", "worker"]
    readonly_fields = ["source", "last_slot_at", "created_at", "updated_at"]
    actions = ["pause_entries", "resume_entries"]
    fields = ["name", "expression", "timezone", "worker", "args", "options", "catch_up",
              "paused", "source", "last_slot_at", "created_at", "updated_at"]

    @staticmethod
    def _local(entry, value):
        try:
            return value.astimezone(entry.tzinfo)
        except Exception:  # an unknown time zone: UTC
            return value

    @admin.display(description="next run")
    def next_run(self, entry):
        try:
            if entry.expression_obj.reboot:
                return "at cluster start"
            when = entry.next_run()
        except Exception:
            return format_html('<span class="errornote">invalid expression</span>')
        if entry.paused:
            return "paused"
        if when is None:
            return "never"
        local = self._local(entry, when)
        return format_html('<time datetime="{}">{}</time>', when.isoformat(),
                           local.strftime("%Y-%m-%d %H:%M %Z"))

    @admin.display(description="last run", ordering="last_slot_at")
    def last_run(self, entry):
        if entry.last_slot_at is None:
            return "-"
        local = self._local(entry, entry.last_slot_at)
        return format_html('<time datetime="{}">{}</time>', entry.last_slot_at.isoformat(),
                           local.strftime("%Y-%m-%d %H:%M %Z"))

    @admin.action(description="Pause selected entries", permissions=["change"])
    def pause_entries(self, request, queryset):
        count = queryset.update(paused=True)
        self.message_user(request, f"Paused {count} cron entr{'y' if count == 1 else 'ies'}.",
                          messages.SUCCESS)

    @admin.action(description="Resume selected entries", permissions=["change"])
    def resume_entries(self, request, queryset):
        # Runs missed while paused are skipped, not caught up: the entry starts from now.
        queryset.filter(paused=True).update(paused=False, last_slot_at=timezone.now())
        count = queryset.count()
        self.message_user(request, f"Resumed {count} cron entr{'y' if count == 1 else 'ies'}.",
                          messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        if change and "paused" in form.changed_data and not obj.paused:
            obj.last_slot_at = timezone.now()  # resumed: skip the runs missed while paused
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.source == CronSource.SETTINGS:
            # Mirrors DJANGO_JOBS["CRONTAB"]: only pausing is changed here.
            return [f for f in self.fields if f != "paused"]
        return self.readonly_fields
