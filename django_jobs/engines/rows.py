"""Rows of the jobs table into ``Job`` instances, without the ORM's row machinery.

The producers' hot path: a fetched row becomes a job through ``Job.from_db`` directly, with
each column converted as the ORM would (JSON text decoded, the backend's own converters such as
SQLite's datetimes). A row whose value cannot be read (text that is not JSON, a timestamp that
does not parse: a row no API writes) still becomes a job: the column is left empty and
:data:`UNREADABLE` on the job names the cause, so that its attempt fails with that error instead
of the fetch failing for every row beside it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections
from django.db.models import JSONField, signals
from django.db.models.base import ModelState

from ..models import Job

#: Attribute of a decoded job naming the columns that could not be read (absent when all
#: could), as "column: reason" strings.
UNREADABLE = "unreadable_columns"

#: What an unreadable column holds instead, for columns that must hold something.
_EMPTY = {"args": {}, "meta": {}, "errors": [], "tags": []}


def jobs_from_rows(alias: str, names: tuple[str, ...], rows: Sequence[Sequence]) -> list[Job]:
    """Jobs from rows of ``SELECT/RETURNING *`` (``names`` are the column names), in fetch
    order (priority, scheduled_at, id)."""
    if not rows:
        return []
    order, converters = _layout(alias, names)
    fields = Job._meta.concrete_fields
    # Each row straight into the instance's attributes, as ``Job.from_db`` would set them, at
    # a third of its cost (Model.__init__ walks the fields one keyword at a time). A project
    # that listens to Job's pre_init/post_init gets the ORM's own path, and its signals.
    build = (_from_db if signals.pre_init.has_listeners(Job)
             or signals.post_init.has_listeners(Job) else _direct)
    attnames = [f.attname for f in fields]
    jobs = []
    for row in rows:
        values = [row[i] for i in order]
        unreadable = None
        for i, convert in converters:
            if values[i] is not None:
                try:
                    values[i] = convert(values[i])
                except Exception as exc:  # any unreadable value: named below
                    name = fields[i].attname
                    values[i] = _EMPTY.get(name)
                    unreadable = [*(unreadable or []), f"{name}: {type(exc).__name__}: {exc}"]
        job = build(alias, attnames, values)
        if unreadable:
            setattr(job, UNREADABLE, unreadable)
        jobs.append(job)
    jobs.sort(key=lambda job: (job.priority, job.scheduled_at, job.pk))
    return jobs


def _from_db(alias: str, attnames: list[str], values: list) -> Job:
    return Job.from_db(alias, None, values)


def _direct(alias: str, attnames: list[str], values: list) -> Job:
    job = Job.__new__(Job)
    state = ModelState()
    state.adding = False
    state.db = alias
    job._state = state
    job.__dict__.update(zip(attnames, values, strict=True))
    return job


@functools.lru_cache(maxsize=16)
def _layout(alias: str, names: tuple[str, ...]) -> tuple[list[int], list[tuple[int, Callable]]]:
    """For columns ``names``: their positions in Job's concrete field order, and the
    conversions their raw values need."""
    fields = Job._meta.concrete_fields
    order = [names.index(f.column) for f in fields]
    connection = connections[alias]
    converters: list[tuple[int, Callable]] = []
    for i, field in enumerate(fields):
        if isinstance(field, JSONField):
            converters.append((i, json.loads))
            continue
        expression = field.get_col(Job._meta.db_table)
        backend = connection.ops.get_db_converters(expression)
        if backend:
            converters.append((i, _backend_converter(backend, expression, alias)))
    return order, converters


def _backend_converter(backend: list, expression: Any, alias: str) -> Callable[[Any], Any]:
    """One function applying the backend's converters of a column in turn."""

    def convert(value: Any) -> Any:
        connection = connections[alias]
        for converter in backend:
            value = converter(value, expression, connection)
        return value

    return convert
