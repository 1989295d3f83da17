"""Unique jobs: the ``unique`` option, parsed once, and the key it gives a job.

A unique job carries ``unique_key`` (a hash of the fields the option names) and
``unique_states`` (the states in which it blocks duplicates). The database derives
``unique_slot`` from them and a unique index on that column rejects a second slot holder,
whatever the number of concurrent inserters. :mod:`django_jobs.insertion` then applies ``period``
and ``timestamp``: a holder found outside the new job's window gives up its slot.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .durations import to_seconds
from .exceptions import InvalidJobError, UnknownOptionError
from .jsonutil import dumps
from .models.job import STATE_BITS, JobState

_S = JobState
#: Oban's named state groups.
STATE_GROUPS: dict[str, frozenset[str]] = {
    "all": frozenset(JobState.values),
    "incomplete": frozenset({_S.AVAILABLE, _S.SCHEDULED, _S.SUSPENDED, _S.EXECUTING,
                             _S.RETRYABLE}),
    "scheduled": frozenset({_S.SCHEDULED}),
    "successful": frozenset({_S.AVAILABLE, _S.SCHEDULED, _S.SUSPENDED, _S.EXECUTING,
                             _S.RETRYABLE, _S.COMPLETED}),
}
FIELDS = ("args", "queue", "worker", "meta")
TIMESTAMPS = ("inserted_at", "scheduled_at")
OPTIONS = ("period", "fields", "keys", "states", "timestamp")
#: Fields ``replace`` may update on the existing job.
REPLACEABLE = ("args", "max_attempts", "meta", "priority", "queue", "scheduled_at", "tags",
               "worker")


@dataclass(frozen=True)
class UniqueSpec:
    """A validated ``unique`` option.

    ``period`` is in seconds (``math.inf`` for ever); ``fields`` are compared whole, except that
    ``keys`` limits ``args`` and ``meta`` to those keys; ``states`` are the states in which an
    existing job counts as a duplicate; ``timestamp`` is the column ``period`` is measured on.
    """

    period: float = 60.0
    fields: tuple[str, ...] = ("args", "queue", "worker")
    keys: tuple[str, ...] = ()
    states: frozenset[str] = STATE_GROUPS["successful"]
    timestamp: str = "inserted_at"

    @property
    def states_mask(self) -> int:
        mask = 0
        for state in self.states:
            mask |= STATE_BITS[state]
        return mask

    def key(self, *, worker: str, queue: str, args: Mapping[str, Any],
            meta: Mapping[str, Any]) -> str:
        """The SHA-256 of the compared values (JSON with sorted keys), as 64 hex digits."""
        values = {"worker": worker, "queue": queue, "args": args, "meta": meta}
        material = {}
        for field in self.fields:
            value = values[field]
            if self.keys and field in ("args", "meta"):
                value = {k: value[k] for k in self.keys if k in value}
            material[field] = value
        text = dumps(_sorted(material))
        return hashlib.sha256(text.encode()).hexdigest()

    def is_duplicate(self, existing_state: str, existing_time: datetime.datetime,
                     now: datetime.datetime) -> bool:
        """Whether a job holding the same key blocks a new one under this spec."""
        if existing_state not in self.states:
            return False
        if math.isinf(self.period):
            return True
        return existing_time >= now - datetime.timedelta(seconds=self.period)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f", did you mean {close[0]!r}?" if close else ""


def parse_unique(value: Any) -> UniqueSpec | None:
    """Validate a ``unique`` option: ``None``/``False`` (not unique), ``True`` or a dict."""
    if value is None or value is False:
        return None
    if value is True:
        return UniqueSpec()
    if isinstance(value, UniqueSpec):
        return value
    if not isinstance(value, Mapping):
        raise InvalidJobError(f"unique must be True, False, None or a dict, not {value!r}")
    for name in value:
        if name not in OPTIONS:
            raise UnknownOptionError(f"unknown unique option {name!r}{_suggest(name, OPTIONS)}"
                                     f" (valid: {', '.join(OPTIONS)})")
    spec = UniqueSpec()
    period = to_seconds(value.get("period", spec.period), "unique period", allow_infinity=True)
    fields = _names(value.get("fields", spec.fields), FIELDS, "unique fields")
    if not fields:
        raise InvalidJobError("unique fields must name at least one of " + ", ".join(FIELDS))
    keys = value.get("keys", ())
    if isinstance(keys, str) or not isinstance(keys, (list, tuple)):
        raise InvalidJobError(f"unique keys must be a list of strings, not {keys!r}")
    keys = tuple(keys)
    if not all(isinstance(k, str) for k in keys):
        raise InvalidJobError(f"unique keys must be strings, not {keys!r}")
    if keys and not {"args", "meta"} & set(fields):
        raise InvalidJobError("unique keys need 'args' or 'meta' in unique fields")
    states = parse_states(value.get("states", "successful"))
    if not states & {JobState.AVAILABLE, JobState.SCHEDULED}:
        raise InvalidJobError(
            f"unique states {sorted(states)} must include 'available' or 'scheduled': a job "
            f"holds its unique slot from its insert for as long as it stays in these states")
    timestamp = value.get("timestamp", spec.timestamp)
    if timestamp not in TIMESTAMPS:
        raise InvalidJobError(f"unique timestamp must be one of {', '.join(TIMESTAMPS)}, "
                              f"not {timestamp!r}")
    return UniqueSpec(period=period, fields=fields, keys=keys, states=states,
                      timestamp=timestamp)


def parse_states(value: Any) -> frozenset[str]:
    """A named group (``all``, ``incomplete``, ``scheduled``, ``successful``) or a list."""
    if isinstance(value, str):
        if value in STATE_GROUPS:
            return STATE_GROUPS[value]
        raise InvalidJobError(f"unknown unique state group {value!r}"
                              f"{_suggest(value, STATE_GROUPS)} (groups: "
                              f"{', '.join(STATE_GROUPS)}; or give a list of states)")
    states = frozenset(_names(value, JobState.values, "unique states"))
    if not states:
        raise InvalidJobError("unique states must not be empty")
    return states


def _names(value: Any, valid: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidJobError(f"{what} must be a list, not {value!r}")
    valid = tuple(valid)
    names = tuple(str(v) for v in value)
    for name in names:
        if name not in valid:
            raise InvalidJobError(f"unknown name {name!r} in {what}{_suggest(name, valid)}"
                                  f" (valid: {', '.join(valid)})")
    return tuple(dict.fromkeys(names))


def parse_replace(value: Any) -> dict[str, tuple[str, ...]] | None:
    """Validate ``replace``: a list of fields (any state) or ``{state: [fields]}``."""
    if not value:
        return None
    if isinstance(value, Mapping):
        result = {}
        for state, fields in value.items():
            if state not in JobState.values:
                raise InvalidJobError(f"unknown state {state!r} in replace"
                                      f"{_suggest(str(state), JobState.values)}")
            result[state] = _names(fields, REPLACEABLE, "replace fields")
        return result
    fields = _names(value, REPLACEABLE, "replace fields")
    return {state: fields for state in JobState.values}
