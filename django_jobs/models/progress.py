"""Progress reported by a running job: ``job.report_progress(value)`` inside ``perform``.

The value is kept in ``job.meta["progress"]``. While an attempt runs under ``runjobs`` or
``drain_queue``, the executor gives the job a :class:`ProgressReporter`, which writes the value
to the job's row: the first report at once, later ones at most every :data:`INTERVAL` seconds
(a report inside that interval is written by the node's next heartbeat, or when
the attempt ends, before its outcome is handed to the acker). The write sets that one meta key
and touches the row only while this attempt runs it (see
:meth:`~django_jobs.models.job.JobQuerySet.write_progress`). Without a reporter (inline mode,
``perform_job``, a job outside an attempt) only the job in memory changes.

Each report sends :data:`~django_jobs.signals.job_progress` (sender: the worker class).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from django.db import DEFAULT_DB_ALIAS, models
from django.db.models import F, Func, Value

from .. import signals
from ..exceptions import InvalidJobError
from ..jsonutil import dumps, round_trip

logger = logging.getLogger("django_jobs.progress")

#: Seconds between two writes of one job's progress (at most four a second).
INTERVAL = 0.25


def check_progress(value: Any) -> Any:
    """``value`` as it will read back from the database: a number within 0 and 100 (a
    percentage, shown as a bar in the admin), or any other JSON value. Raises
    :class:`~django_jobs.exceptions.InvalidJobError` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and 0 <= value <= 100):
            raise InvalidJobError(f"progress must be within 0 and 100 when it is a number, "
                                  f"not {value!r}")
        return value
    return round_trip(value, "progress")


def set_in_memory(job: Any, value: Any) -> None:
    if not isinstance(job.meta, dict):
        job.meta = {}
    job.meta["progress"] = value


def send_progress(sender: Any, job: Any, value: Any) -> None:
    """Send ``job_progress``; a receiver that raises is logged, never fails the job."""
    if not signals.job_progress.receivers:
        return
    for receiver, response in signals.job_progress.send_robust(sender, job=job,
                                                               progress=value):
        if isinstance(response, Exception):
            logger.error("signal receiver %r failed: %r", receiver, response)


class JSONSetKey(Func):
    """The JSON object in column ``field`` with its top-level ``key`` set to ``value`` (any
    JSON value): one key written, whatever else the object holds."""

    output_field = models.JSONField()

    def __init__(self, field: str, key: str, value: Any) -> None:
        self.key = key
        super().__init__(F(field), Value(dumps(value)))

    def _compile(self, compiler, connection) -> tuple[str, str, list]:
        field, value = self.get_source_expressions()
        field_sql, field_params = compiler.compile(field)
        value_sql, value_params = compiler.compile(value)
        return field_sql, value_sql, [*field_params, *value_params]

    def as_postgresql(self, compiler, connection, **extra):
        field, value, params = self._compile(compiler, connection)
        return (f"jsonb_set({field}, ARRAY[%s]::text[], ({value})::jsonb)",
                [*params[:-1], self.key, params[-1]])

    def as_sql(self, compiler, connection, **extra):  # SQLite (json1; MySQL alike)
        field, value, params = self._compile(compiler, connection)
        return f"JSON_SET({field}, %s, JSON({value}))", [*params[:-1], f"$.{self.key}",
                                                         params[-1]]


class ProgressReporter:
    """Writes one attempt's progress to the job's row, throttled (see the module docstring).

    Used from the thread running ``perform`` (:meth:`report`), the node's heartbeat
    (:meth:`flush` once :meth:`due`) and the executor (:meth:`close`); a lock keeps their
    writes in order, so an older value never lands after a newer one.
    """

    def __init__(self, job: Any, *, sender: Any, written: bool = True) -> None:
        self.job = job
        self.sender = sender
        #: False for attempts whose job is not a row being run (inline mode, ``perform_job``):
        #: reports change the job in memory and send the signal, nothing more.
        self.written = written
        self._lock = threading.Lock()
        self._pending = False
        self._written_at: float | None = None
        self._closed = False

    def report(self, value: Any) -> None:
        with self._lock:
            set_in_memory(self.job, value)
            if self.written and not self._closed:
                self._pending = True
                if self._written_at is None or time.monotonic() - self._written_at >= INTERVAL:
                    self._write()
        send_progress(self.sender, self.job, value)

    def due(self) -> bool:
        """Whether a value waits and may be written now."""
        return (self._pending and not self._closed and self._written_at is not None
                and time.monotonic() - self._written_at >= INTERVAL)

    def flush(self) -> None:
        """Write the value waiting, if any (from another thread: errors are logged)."""
        with self._lock:
            if self._pending and not self._closed:
                self._write_logged()

    def close(self) -> None:
        """The attempt is over: write the value waiting, and no more after."""
        with self._lock:
            if self._pending and not self._closed:
                self._write_logged()
            self._closed = True

    def _write_logged(self) -> None:
        try:
            self._write()
        except Exception:
            logger.exception("writing the progress of job %s failed", self.job.pk)

    def _write(self) -> None:
        job = self.job
        type(job).objects.using(job._state.db or DEFAULT_DB_ALIAS).write_progress(
            job, job.meta["progress"])
        self._pending = False
        self._written_at = time.monotonic()
