"""Pruner: deletes finished jobs (completed, cancelled, discarded) once they are old enough.

Options: ``DJANGO_JOBS["PRUNER"]``, ``False`` to turn pruning off, or a dict whose keys are
merged over the defaults (``django_jobs.conf.DEFAULTS["PRUNER"]``)::

    "PRUNER": {
        "max_age": 7 * 86400,       # seconds (or a timedelta, or (7, "days")); None: keep
        "interval": 30,             # seconds between passes on the leader
        "limit": 10_000,            # most jobs deleted per pass
        "by_state": {"discarded": 30 * 86400, "completed": 3600},
        "by_queue": {"audit": None},             # None (or "infinity"): never pruned
        "by_worker": {"myapp.workers.Report": (90, "days")},
    }

A job's retention is the first that names it, in Oban's DynamicPruner order: its worker's
(``by_worker``), else its state's (``by_state``), else its queue's (``by_queue``), else
``max_age``. The decision (which jobs are old enough) is :func:`prune_jobs`'s; the deletes go
through the door.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any

from django.db import connections
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from ..conf import DEFAULTS, SETTING_NAME, jobs_settings
from ..engines import Engine
from ..models import FINISHED_STATES, Job
from ..exceptions import ConfigurationError
from ..transitions import HeldJob, transition
from .base import Plugin, Problem, seconds_option, unknown_options

__all__ = ["INDEX", "OPTIONS", "REPORTED_IDS", "Pruner", "Retention", "prunable", "prune_jobs",
           "prune_statement"]

#: The options of ``DJANGO_JOBS["PRUNER"]`` (their defaults: ``conf.DEFAULTS["PRUNER"]``).
OPTIONS = ("max_age", "interval", "limit", "by_state", "by_queue", "by_worker")
#: Most ids of deleted jobs a pass reports to ``plugin_ran`` (the count is always exact).
REPORTED_IDS = 1000
WHERE = f"{SETTING_NAME}['PRUNER']"
#: The index every prune query scans (partial on the finished states, on the time a job
#: finished; see the Job model).
INDEX = "django_jobs_prune"


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long finished jobs are kept, in seconds (``math.inf``: for ever), by default and
    per worker, state and queue (that order of precedence)."""

    max_age: float
    by_state: Mapping[str, float] = dataclasses.field(default_factory=dict)
    by_queue: Mapping[str, float] = dataclasses.field(default_factory=dict)
    by_worker: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def rules(self) -> list[tuple[Q, float]]:
        """(condition, age) per rule, most specific first; each condition leaves out the jobs
        a more specific rule names, so every job is judged by exactly one age. Rules that keep
        jobs for ever are left out (their jobs are still left out of the others)."""
        workers, states, queues = list(self.by_worker), list(self.by_state), list(self.by_queue)
        not_worker = ~Q(worker__in=workers) if workers else Q()
        not_state = ~Q(state__in=states) if states else Q()
        not_queue = ~Q(queue__in=queues) if queues else Q()
        rules = [(Q(worker=w), age) for w, age in self.by_worker.items()]
        rules += [(Q(state=s) & not_worker, age) for s, age in self.by_state.items()]
        rules += [(Q(queue=q) & not_state & not_worker, age) for q, age in self.by_queue.items()]
        rules.append((not_queue & not_state & not_worker, self.max_age))
        return [(condition, age) for condition, age in rules if math.isfinite(age)]


def _finished() -> RawSQL:
    """``state IN ('completed', 'discarded', 'cancelled')`` with the states written in the SQL,
    as the prune index's condition is: SQLite uses a partial index only when the query has
    its condition, and cannot tell that bound parameters match it. (The states are constants
    of the code, never user input.)"""
    assert all(state.isalpha() for state in FINISHED_STATES)
    states = ", ".join(f"'{state}'" for state in FINISHED_STATES)
    return RawSQL(f'"state" IN ({states})', [], output_field=BooleanField())


def prunable(now: datetime.datetime, retention: Retention, *,
             using: str | None = None) -> list[QuerySet]:
    """One query per rule of ``retention``: the finished jobs it finds old enough, oldest
    first, as the rows the door needs. Each is a range scan of the prune index (partial on
    the finished states, on the time a job finished) in the index's own order, so a sliced
    query stops after its limit; the rule's other conditions filter what the scan reads."""
    finished = Job.objects.using(using).alias(
        finished=Coalesce("completed_at", "cancelled_at", "discarded_at")).filter(_finished())
    return [finished.filter(condition, finished__lt=now - datetime.timedelta(seconds=age))
            .order_by("finished").values_list("id", "worker", "queue", "meta", "state",
                                              "attempt")
            for condition, age in retention.rules()]


def prune_statement(query: QuerySet, limit: int) -> tuple[str, list[Any], Any]:
    """The SQL of ``query[:limit]`` as the pruner runs it, its parameters, and its compiler
    (which converts the rows read).

    SQLite without statistics (Django never runs ``ANALYZE``) prefers the ``(state, queue)``
    index for ``state IN (finished)`` and then sorts every finished job to find the oldest:
    the statement names the prune index (``INDEXED BY``), so each pass reads ``limit`` entries
    of it. PostgreSQL's planner picks the index by itself (tests/test_plugin_decisions.py
    checks both plans)."""
    query = query[:limit]
    compiler = query.query.get_compiler(query.db)
    sql, params = compiler.as_sql()
    if connections[query.db].vendor == "sqlite":
        table = connections[query.db].ops.quote_name(Job._meta.db_table)
        sql = sql.replace(f"FROM {table}", f"FROM {table} INDEXED BY {INDEX}", 1)
    return sql, list(params), compiler


def _read_rows(query: QuerySet, limit: int) -> list[tuple]:
    """``query[:limit]``'s rows, read with :func:`prune_statement`'s SQL."""
    sql, params, compiler = prune_statement(query, limit)
    with connections[query.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = compiler.get_converters([column[0] for column in compiler.select])
    return [tuple(row) for row in compiler.apply_converters(rows, converters)] \
        if converters else rows


def prune_jobs(now: datetime.datetime, limit: int, retention: Retention, *,
               using: str | None = None) -> list[int]:
    """Delete up to ``limit`` finished jobs that ``retention`` says are old at ``now``, the
    oldest of each rule first; return the ids of the jobs deleted.

    Each rule is one bounded read of the prune index (see :func:`prunable` and
    :func:`prune_statement`) and one delete by id through the door, which deletes only jobs
    still finished (a job retried in between stays, and is not reported)."""
    deleted: list[int] = []
    remaining = limit
    for query in prunable(now, retention, using=using):
        if remaining <= 0:
            break
        rows = _read_rows(query, remaining)
        if not rows:
            continue
        remaining -= len(rows)
        ids = [row[0] for row in rows]
        count = transition(ids, None, only_from=FINISHED_STATES,
                           held={row[0]: HeldJob(*row[1:]) for row in rows}, using=using)
        if count != len(ids):  # some left the finished states in between: they stay
            kept = set(Job.objects.using(using).filter(pk__in=ids).values_list("pk", flat=True))
            ids = [pk for pk in ids if pk not in kept]
        deleted += ids
    return deleted


def _read(options: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The pruner's options (None: pruning off) and every problem with them."""
    if options is False:
        return None, []
    if options is True:
        options = {}
    if not isinstance(options, Mapping):
        return None, [Problem(f"{WHERE} must be a dict of options or False (no pruning), not "
                              f"{options!r}.")]
    problems = unknown_options(WHERE, options, OPTIONS)
    merged = {**DEFAULTS["PRUNER"], **{k: v for k, v in options.items() if k in OPTIONS}}
    read: dict[str, Any] = {}

    def seconds(key: str, value: Any, **kwargs: Any) -> float | None:
        try:
            return seconds_option(key, value, **kwargs)
        except ConfigurationError as exc:
            problems.append(Problem(str(exc)))
            return None

    read["max_age"] = seconds(f"{WHERE}['max_age']", merged["max_age"], forever=True)
    read["interval"] = seconds(f"{WHERE}['interval']", merged["interval"])
    limit = merged["limit"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        problems.append(Problem(f"{WHERE}['limit'] must be a whole number of jobs of at least "
                                f"1, not {limit!r}."))
    read["limit"] = limit
    for key in ("by_state", "by_worker", "by_queue"):
        where, rules = f"{WHERE}[{key!r}]", merged[key]
        if not isinstance(rules, Mapping):
            problems.append(Problem(f"{where} must be a dict of {key[3:]} -> age, not "
                                    f"{rules!r}."))
            continue
        if key == "by_state":
            for problem in unknown_options(where, rules, FINISHED_STATES):
                problems.append(Problem(problem.msg.replace("option", "state") + " Only "
                                        "finished jobs are pruned.",
                                        problem.hint.replace("options", "states")))
        read[key] = {}
        for name, age in rules.items():
            if not isinstance(name, str) or not name:
                problems.append(Problem(f"{where} names must be non-empty strings, not "
                                        f"{name!r}."))
            elif key != "by_state" or name in FINISHED_STATES:
                read[key][name] = seconds(f"{where}[{name!r}]", age, forever=True)
    return (None if problems else read), problems


class Pruner(Plugin):
    """Runs :func:`prune_jobs` on the leader every ``interval`` seconds (30 by default)."""

    name = "pruner"
    interval = 30.0

    def __init__(self, options: Mapping[str, Any] | bool = True) -> None:
        """``options`` as ``DJANGO_JOBS["PRUNER"]`` takes them (merged over the defaults).
        Raises ConfigurationError naming every bad option."""
        super().__init__()
        read, problems = _read(options)
        if problems or read is None:
            raise ConfigurationError(" ".join(str(p) for p in problems)
                                     or f"{WHERE} is False: pruning is off")
        self.interval = read["interval"]
        self.limit = read["limit"]
        self.retention = Retention(read["max_age"], read["by_state"], read["by_queue"],
                                   read["by_worker"])

    @classmethod
    def _options(cls, overrides: dict[str, Any]) -> Any:
        options = jobs_settings.PRUNER
        if overrides and isinstance(options, Mapping):
            options = {**options, **overrides}
        return options

    @classmethod
    def from_settings(cls, **overrides: Any) -> Pruner | None:
        options = cls._options(overrides)
        return None if options is False else cls(options)

    @classmethod
    def problems(cls, **overrides: Any) -> list[Problem]:
        return _read(cls._options(overrides))[1]

    def run(self, node, engine: Engine, now: datetime.datetime) -> dict[str, Any]:
        ids = prune_jobs(now, self.limit, self.retention, using=engine.alias)
        return {"deleted": len(ids), "ids": ids[:REPORTED_IDS]}
