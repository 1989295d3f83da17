"""A paginator whose count stays cheap on big job tables.

``COUNT(*)`` over millions of rows takes seconds on PostgreSQL (it reads every visible row).
When the planner expects more than ``threshold`` rows, the page shows the planner's estimate
(``EXPLAIN``, which PostgreSQL derives from ``pg_class.reltuples`` and the column statistics)
instead; below it, and on databases without a planner estimate (SQLite), the count is exact.
"""

from __future__ import annotations

import json
from functools import cached_property

from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections


def planner_estimate(queryset) -> int | None:
    """The number of rows PostgreSQL's planner expects ``queryset`` to return, or None where
    the database gives no estimate."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":  # the one database with EXPLAIN (FORMAT JSON)
        return None
    try:
        sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:  # .none(), or a filter that can match nothing
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


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
