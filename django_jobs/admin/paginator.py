"""A paginator whose count stays cheap on big job tables.

``COUNT(*)`` over millions of rows takes seconds on PostgreSQL (it reads every visible row).
When the planner expects more than ``threshold`` rows, the page shows the planner's estimate
(``EXPLAIN``, which PostgreSQL derives from ``pg_class.reltuples`` and the column statistics)
instead; below it, and on databases without a planner estimate (SQLite), the count is exact.
"""

from __future__ import annotations

from functools import cached_property

from django.core.paginator import Paginator

from ..engines import get_engine


def planner_estimate(queryset) -> int | None:
    """The number of rows the planner expects ``queryset`` to return, or None where the
    database gives no estimate (see ``Engine.estimate_rows``)."""
    return get_engine(queryset.db).estimate_rows(queryset)


class EstimatedCountPaginator(Paginator):
    """Exact counts up to ``threshold`` rows, the planner's estimate past it."""

    #: Rows from which an estimate replaces the exact count.
    threshold = 50_000

    #: True when ``count`` is an estimate.
    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if hasattr(queryset, "query"):
            estimate = planner_estimate(queryset)
            if estimate is not None and estimate >= self.threshold:
                self.estimated = True
                return estimate
        return super().count
