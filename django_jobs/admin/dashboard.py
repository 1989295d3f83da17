"""The dashboard: jobs completed and failed over a chosen window, by queue, and execution-time
percentiles, as server-rendered SVG; the page reloads itself on a chosen interval.

"Failed" counts jobs whose latest attempt failed in the window: retryable jobs by
``attempted_at`` and discarded jobs by ``discarded_at``. Execution time is ``completed_at -
attempted_at`` of the jobs completed in the window (the latest ``DURATION_SAMPLE`` of them).
"""

from __future__ import annotations

import datetime
import math
from collections import defaultdict

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.template.response import TemplateResponse
from django.utils import timezone

from ..models import Job, JobState
from .charts import bar_chart, line_chart

#: window key -> (label, seconds, bucket seconds)
WINDOWS = {
    "15m": ("15 minutes", 15 * 60, 60),
    "1h": ("1 hour", 3600, 60),
    "6h": ("6 hours", 6 * 3600, 300),
    "24h": ("24 hours", 86400, 900),
}
DEFAULT_WINDOW = "1h"
#: refresh key -> seconds (0: never)
REFRESH = {"off": 0, "5": 5, "15": 15, "30": 30, "60": 60}
DEFAULT_REFRESH = "30"
DURATION_SAMPLE = 5000
PERCENTILES = (50, 95, 99)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _buckets(queryset, field: str, start, bucket: int, count: int) -> dict[str, list[int]]:
    """Jobs of ``queryset`` per queue per bucket of ``field`` (one query)."""
    series: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    rows = (queryset.order_by().annotate(minute=TruncMinute(field))
            .values_list("minute", "queue").annotate(n=Count("pk")))
    for minute, queue, n in rows:
        index = int((minute - start).total_seconds() // bucket)
        if 0 <= index < count:
            series[queue][index] += n
    return dict(series)


def dashboard_data(window: str = DEFAULT_WINDOW, now: datetime.datetime | None = None) -> dict:
    label, seconds, bucket = WINDOWS[window]
    count = seconds // bucket
    now = now or timezone.now()
    # Buckets end at the next whole minute, so the current minute is the last point.
    end = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    start = end - datetime.timedelta(seconds=seconds)
    completed = _buckets(Job.objects.filter(state=JobState.COMPLETED, completed_at__gte=start),
                         "completed_at", start, bucket, count)
    failed_retryable = _buckets(
        Job.objects.filter(state=JobState.RETRYABLE, attempted_at__gte=start),
        "attempted_at", start, bucket, count)
    failed_discarded = _buckets(
        Job.objects.filter(state=JobState.DISCARDED, discarded_at__gte=start),
        "discarded_at", start, bucket, count)
    failed: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    for part in (failed_retryable, failed_discarded):
        for queue, values in part.items():
            failed[queue] = [a + b for a, b in zip(failed[queue], values, strict=True)]
    durations: dict[str, list[float]] = defaultdict(list)
    for queue, attempted, done in (
            Job.objects.filter(Q(state=JobState.COMPLETED, completed_at__gte=start),
                               attempted_at__isnull=False)
            .order_by("-completed_at").values_list("queue", "attempted_at", "completed_at")
            [:DURATION_SAMPLE]):
        durations[queue].append(max((done - attempted).total_seconds(), 0.0))
    stats = []
    for queue in sorted(durations):
        values = sorted(durations[queue])
        stats.append({"queue": queue, "count": len(values),
                      **{f"p{p}": percentile(values, p) for p in PERCENTILES}})
    x_labels = [timezone.localtime(start + datetime.timedelta(seconds=bucket * (i + 1)))
                .strftime("%H:%M") for i in range(count)]
    return {"window": window, "label": label, "bucket": bucket, "start": start, "end": end,
            "x_labels": x_labels, "completed": completed, "failed": dict(failed),
            "durations": stats,
            "total_completed": sum(map(sum, completed.values())),
            "total_failed": sum(map(sum, failed.values()))}


def _total(series: dict[str, list[int]], count: int) -> list[int]:
    total = [0] * count
    for values in series.values():
        total = [a + b for a, b in zip(total, values, strict=True)]
    return total


def charts(data: dict) -> dict:
    count = len(data["x_labels"])
    per = "minute" if data["bucket"] == 60 else f"{data['bucket'] // 60} minutes"
    labels = data["x_labels"]
    # One colour per queue in both per-queue charts.
    colour = {q: i for i, q in enumerate(sorted({*data["completed"], *data["failed"]}))}

    def by_queue(series):
        return [(q, v, colour[q]) for q, v in sorted(series.items())] or \
            [("no jobs", [0] * count)]

    return {
        "throughput": line_chart(
            f"Jobs completed and failed per {per}, last {data['label']}", labels,
            [("completed", _total(data["completed"], count)),
             ("failed", _total(data["failed"], count))]),
        "completed_by_queue": line_chart(
            f"Completed per {per} by queue", labels, by_queue(data["completed"])),
        "failed_by_queue": line_chart(
            f"Failed per {per} by queue", labels, by_queue(data["failed"])),
        "durations": bar_chart(
            "Execution time percentiles by queue",
            [(row["queue"], [(f"p{p}", row[f"p{p}"]) for p in PERCENTILES])
             for row in data["durations"]]) if data["durations"] else None,
        "per": per,
    }


def dashboard_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    request.current_app = model_admin.admin_site.name
    window = request.GET.get("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    refresh = request.GET.get("refresh", DEFAULT_REFRESH)
    if refresh not in REFRESH:
        refresh = DEFAULT_REFRESH
    data = dashboard_data(window)
    context = {
        **model_admin.admin_site.each_context(request),
        **model_admin.page_links(request),
        "title": "Dashboard",
        "opts": model_admin.opts,
        "data": data,
        "charts": charts(data),
        "windows": [(key, value[0]) for key, value in WINDOWS.items()],
        "refreshes": list(REFRESH),
        "window": window,
        "refresh": refresh,
        "refresh_seconds": REFRESH[refresh],
    }
    return TemplateResponse(request, "admin/django_jobs/job/dashboard.html", context)
