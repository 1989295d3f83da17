"""Recorded results: the value ``perform`` returns is stored with the job.

::

    class PriceWorker(Worker):
        recorded = True                      # or {"limit": 64_000} (bytes, after compression)
                                             # and/or {"to": "price"} (the meta key)

        def perform(self, job):
            return {"sku": job.args["sku"], "price": Decimal("9.90")}

    fetch_recorded(job)                      # {"sku": ..., "price": Decimal("9.90")}

A non-None return value of a completed attempt is encoded as a term (tagged JSON: tuples,
sets, decimals, datetimes and bytes keep their type; never pickle), compressed, and written in
the job's meta (``meta["recorded"] = True``, ``meta["return"]``) in the same statement as the
completion — completions stay one statement for a whole batch. With ``{"to": "price"}`` the
value goes under ``meta["price"]`` instead, and ``meta["recorded"]`` names that key, so
``fetch_recorded`` and the admin find it from the job alone (whatever the worker says today).
A value over the limit (default 32,000 bytes after compression) fails the attempt with an
error naming its size; a value that cannot be encoded fails it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigurationError, JobsError
from ..features import Attempt, Feature
from . import terms

#: Bytes a recorded value may take after compression, unless the worker says otherwise.
DEFAULT_LIMIT = 32_000
#: The meta key of a recorded value, unless the worker says otherwise (``"to"``).
DEFAULT_KEY = "return"
#: Meta keys django_jobs itself writes: a recorded value may not go there.
RESERVED_KEYS = frozenset({"recorded", "batch_id", "batch_callback", "chain_id", "cron",
                           "cron_expr", "cron_tz", "cron_name", "cron_slot", "deadline_at",
                           "deadline_force", "snoozed"})


@dataclass(frozen=True)
class RecordedConfig:
    """A recorded worker's options: the size ``limit`` in bytes and the meta key ``to``."""

    limit: int = DEFAULT_LIMIT
    to: str = DEFAULT_KEY


def recorded_key(meta: Any) -> str | None:
    """The meta key holding the recorded value of a job with ``meta``, or None when the job
    has none (``meta["recorded"]`` is True for the default key, the key itself otherwise)."""
    if not isinstance(meta, Mapping):
        return None
    marker = meta.get("recorded")
    key = DEFAULT_KEY if marker is True else marker if isinstance(marker, str) else None
    return key if key is not None and key in meta else None


class NotRecorded(JobsError, LookupError):
    """The job has no recorded result (its worker is not recorded, it has not completed, or
    ``perform`` returned None)."""


class ResultTooLarge(JobsError, ValueError):
    """A result over the worker's recorded limit; the attempt failed."""


def fetch_recorded(job: Any) -> Any:
    """The value ``job``'s ``perform`` returned and recorded; raise :class:`NotRecorded` when
    there is none."""
    key = recorded_key(job.meta)
    if key is None:
        raise NotRecorded(f"job {job.pk} ({job.worker}) has no recorded result")
    return terms.unpack(job.meta[key])


class Recorded(Feature):
    """``recorded = True`` or ``{"limit": bytes, "to": meta_key}``: record what ``perform``
    returns."""

    name = "recorded"

    def setup(self, worker: type) -> RecordedConfig | None:
        option = getattr(worker, "recorded", None)
        if option is None or option is False:
            return None
        if option is True:
            return RecordedConfig()
        if isinstance(option, Mapping) and set(option) <= {"limit", "to"}:
            limit = option.get("limit", DEFAULT_LIMIT)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
                raise ConfigurationError(f"recorded limit must be a positive whole number of "
                                         f"bytes, not {limit!r}")
            to = option.get("to", DEFAULT_KEY)
            if not isinstance(to, str) or not to or to != to.strip():
                raise ConfigurationError(f"recorded 'to' must be a meta key: a non-empty "
                                         f"string without surrounding spaces, not {to!r}")
            if to in RESERVED_KEYS:
                raise ConfigurationError(f"recorded 'to' cannot be {to!r}: django_jobs writes "
                                         f"that meta key itself")
            return RecordedConfig(limit, to)
        raise ConfigurationError(f"recorded must be True or a dict of 'limit' (bytes) and "
                                 f"'to' (a meta key), not {option!r}")

    def after(self, attempt: Attempt, config: RecordedConfig) -> None:
        if attempt.state != "complete" or attempt.result is None:
            return
        attempt.write_meta(**recorded_meta(attempt.result, config.limit, attempt.job.worker,
                                           to=config.to))


def recorded_meta(value: Any, limit: int = DEFAULT_LIMIT, worker: str = "the job", *,
                  to: str = DEFAULT_KEY) -> dict:
    """The meta keys that record ``value`` as a job's result (what :func:`fetch_recorded` reads
    back): ``{"recorded": True, "return": <packed term>}``, or under the meta key ``to`` with
    ``"recorded": to``. Raise ``TermError`` for a value that cannot be encoded and
    :class:`ResultTooLarge` for one over ``limit`` bytes after compression; ``worker`` names
    the job in those messages."""
    try:
        packed = terms.pack(value)
    except terms.TermError as exc:
        raise terms.TermError(f"the result of {worker} cannot be recorded: {exc}") from None
    size = terms.packed_size(packed)
    if size > limit:
        raise ResultTooLarge(f"the result of {worker} is {size:,} bytes after compression, "
                             f"over its recorded limit of {limit:,} bytes")
    marker = True if to == DEFAULT_KEY else to
    return {"recorded": marker, to: packed}
