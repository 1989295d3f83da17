"""Recorded results: the value ``perform`` returns is stored with the job.

::

    class PriceWorker(Worker):
        recorded = True                      # or {"limit": 64_000} (bytes, after compression)

        def perform(self, job):
            return {"sku": job.args["sku"], "price": Decimal("9.90")}

    fetch_recorded(job)                      # {"sku": ..., "price": Decimal("9.90")}

A non-None return value of a completed attempt is encoded as a term (tagged JSON: tuples,
sets, decimals, datetimes and bytes keep their type; never pickle), compressed, and written in
the job's meta (``meta["recorded"] = True``, ``meta["return"]``) in the same statement as the
completion — completions stay one statement for a whole batch. A value over the limit (default
32,000 bytes after compression) fails the attempt with an error naming its size; a value that
cannot be encoded fails it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError, JobsError
from ..features import Attempt, Feature
from . import terms

#: Bytes a recorded value may take after compression, unless the worker says otherwise.
DEFAULT_LIMIT = 32_000


class NotRecorded(JobsError, LookupError):
    """The job has no recorded result (its worker is not recorded, it has not completed, or
    ``perform`` returned None)."""


class ResultTooLarge(JobsError, ValueError):
    """A result over the worker's recorded limit; the attempt failed."""


def fetch_recorded(job: Any) -> Any:
    """The value ``job``'s ``perform`` returned and recorded; raise :class:`NotRecorded` when
    there is none."""
    meta = job.meta if isinstance(job.meta, Mapping) else {}
    if not meta.get("recorded") or "return" not in meta:
        raise NotRecorded(f"job {job.pk} ({job.worker}) has no recorded result")
    return terms.unpack(meta["return"])


class Recorded(Feature):
    """``recorded = True`` or ``{"limit": bytes}``: record what ``perform`` returns."""

    name = "recorded"

    def setup(self, worker: type) -> int | None:
        option = getattr(worker, "recorded", None)
        if option is None or option is False:
            return None
        if option is True:
            return DEFAULT_LIMIT
        if isinstance(option, Mapping) and set(option) <= {"limit"}:
            limit = option.get("limit", DEFAULT_LIMIT)
            if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
                return limit
        raise ConfigurationError(f"recorded must be True or {{'limit': bytes}} with a positive "
                                 f"whole number of bytes, not {option!r}")

    def after(self, attempt: Attempt, config: int) -> None:
        if attempt.state != "complete" or attempt.result is None:
            return
        attempt.write_meta(**recorded_meta(attempt.result, config, attempt.job.worker))


def recorded_meta(value: Any, limit: int = DEFAULT_LIMIT, worker: str = "the job") -> dict:
    """The meta keys that record ``value`` as a job's result (what :func:`fetch_recorded` reads
    back): ``{"recorded": True, "return": <packed term>}``. Raise ``TermError`` for a value
    that cannot be encoded and :class:`ResultTooLarge` for one over ``limit`` bytes after
    compression; ``worker`` names the job in those messages."""
    try:
        packed = terms.pack(value)
    except terms.TermError as exc:
        raise terms.TermError(f"the result of {worker} cannot be recorded: {exc}") from None
    size = terms.packed_size(packed)
    if size > limit:
        raise ResultTooLarge(f"the result of {worker} is {size:,} bytes after compression, "
                             f"over its recorded limit of {limit:,} bytes")
    return {"recorded": True, "return": packed}
