"""List filters of the job browser.

The choices of the queue, worker, tag and node filters come from a sample: the latest
``SAMPLE`` jobs (read through the primary key, one query shared by every filter of a page) and
the producer rows. Listing every distinct value would read the whole table on each page.
"""

from __future__ import annotations

import datetime

from django.contrib import admin
from django.utils import timezone

from ..conf import jobs_settings
from ..models import Job, JobState, Producer
from .search import tag_q

SAMPLE = 1000


def _sample(request) -> dict[str, set]:
    cached = getattr(request, "_django_jobs_sample", None)
    if cached is not None:
        return cached
    values = {"queue": set(), "worker": set(), "tag": set(), "node": set()}
    for queue, worker, tags, attempted_by in Job.objects.order_by("-pk").values_list(
            "queue", "worker", "tags", "attempted_by")[:SAMPLE]:
        values["queue"].add(queue)
        values["worker"].add(worker)
        # Rows no API writes (tags not a list, a node that is not a string) are skipped.
        if isinstance(tags, list):
            values["tag"].update(t for t in tags if isinstance(t, str))
        if isinstance(attempted_by, list) and attempted_by and isinstance(attempted_by[0], str):
            values["node"].add(attempted_by[0])
    for queue, node in Producer.objects.values_list("queue", "node"):
        values["queue"].add(queue)
        values["node"].add(node)
    values["queue"].update(jobs_settings.QUEUES or {})
    request._django_jobs_sample = values
    return values


class SampledFilter(admin.SimpleListFilter):
    """Choices from the sample, plus the value selected now (which may be outside it)."""

    field = ""

    def lookups(self, request, model_admin):
        values = set(_sample(request)[self.field])
        if self.value():
            values.add(self.value())
        return [(v, v) for v in sorted(values)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class QueueFilter(SampledFilter):
    title = "queue"
    parameter_name = field = "queue"


class WorkerFilter(SampledFilter):
    title = "worker"
    parameter_name = field = "worker"


class TagFilter(SampledFilter):
    title = "tag"
    parameter_name = field = "tag"

    def queryset(self, request, queryset):
        return queryset.filter(tag_q(self.value(), queryset.db)) if self.value() else queryset


class NodeFilter(SampledFilter):
    title = "node"
    parameter_name = field = "node"

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(attempted_by__0=self.value())
        return queryset


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return JobState.choices

    def queryset(self, request, queryset):
        return queryset.filter(state=self.value()) if self.value() else queryset


class PriorityFilter(admin.SimpleListFilter):
    title = "priority"
    parameter_name = "priority"

    def lookups(self, request, model_admin):
        return [(str(p), str(p)) for p in range(10)]

    def queryset(self, request, queryset):
        if self.value() and self.value().isascii() and self.value().isdigit():
            return queryset.filter(priority=int(self.value()))
        return queryset


class TimeFilter(admin.SimpleListFilter):
    """When the job was inserted, or scheduled for the future."""

    title = "time"
    parameter_name = "time"
    WINDOWS = {"5m": ("Inserted in the last 5 minutes", 300),
               "1h": ("Inserted in the last hour", 3600),
               "24h": ("Inserted in the last 24 hours", 86400),
               "7d": ("Inserted in the last 7 days", 7 * 86400),
               "old": ("Inserted more than 7 days ago", None),
               "future": ("Scheduled in the future", None)}

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request, queryset):
        value = self.value()
        now = timezone.now()
        if value == "future":
            return queryset.filter(scheduled_at__gt=now)
        if value == "old":
            return queryset.filter(inserted_at__lt=now - datetime.timedelta(days=7))
        if value in self.WINDOWS:
            seconds = self.WINDOWS[value][1]
            return queryset.filter(inserted_at__gte=now - datetime.timedelta(seconds=seconds))
        return queryset
