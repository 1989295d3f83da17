"""JSON encoding of job args and meta, with errors that name the offending value.

Args and meta are stored as JSON. They are encoded once, when a job is built, with Django's
``DjangoJSONEncoder`` (so datetimes, dates, times, timedeltas, decimals and UUIDs become strings,
exactly as they would read back from the database) and decoded again, so the job in memory holds
what a worker will later receive. ``NaN`` and infinities are rejected: PostgreSQL's ``jsonb``
cannot store them.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from typing import Any

from json.encoder import c_make_encoder, encode_basestring_ascii

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.functional import Promise

from .exceptions import InvalidJobError

_SCALARS = (str, int, bool, type(None))
_ENCODED = (datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
            decimal.Decimal, uuid.UUID, Promise)


_encoder = DjangoJSONEncoder(allow_nan=False, separators=(",", ":"))

#: The C encoder ``_encoder.encode`` builds on every call, built once (half the cost of a
#: small dict's encoding was making it). Without the circular-reference markers: a cycle ends
#: in RecursionError, and ``dumps`` then asks ``_encoder`` for the proper error.
_c_encode = (c_make_encoder(None, _encoder.default, encode_basestring_ascii, None, ":", ",",
                            False, False, False) if c_make_encoder is not None else None)


def dumps(value: Any) -> str:
    """Encode ``value`` compactly; raises ``TypeError``/``ValueError`` like ``json.dumps``."""
    if not value and isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    if _c_encode is not None and isinstance(value, (dict, list)):
        try:
            return "".join(_c_encode(value, 0))
        except (RecursionError, TypeError, ValueError):
            pass  # the full encoder below raises the error it should
    return _encoder.encode(value)


def _flat_copy(value: dict) -> dict | None:
    """A copy of ``value`` if a JSON round trip would give it back unchanged: string keys and
    values of exactly str (without NUL), int, bool, None or a finite float. None otherwise
    (nested containers, dates, subclasses...: they take the full round trip)."""
    for key, item in value.items():
        if type(key) is not str or "\x00" in key:
            return None
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return None
        elif not (kind is int or kind is bool or item is None
                  or (kind is float and math.isfinite(item))):
            return None
    return dict(value)


def round_trip(value: Any, what: str) -> Any:
    """Return ``value`` as it will read back from the database.

    Raises :class:`InvalidJobError` naming the first value that JSON cannot hold, with its path
    (``args['user']['tags'][2]``) and type, when ``value`` is not serialisable.

    A flat dict of plain values (the usual job args) is copied without encoding: the round
    trip would return it unchanged.
    """
    if type(value) is dict:
        copy = _flat_copy(value)
        if copy is not None:
            return copy
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        bad = _find_unserialisable(value, what, set())
        detail = bad or str(exc)
        raise InvalidJobError(f"{what} must be JSON serialisable: {detail}") from None
    if "\\u0000" in text:
        # PostgreSQL's jsonb cannot store NUL; refuse it on every engine alike.
        raise InvalidJobError(f"{what} must not contain NUL characters (\\x00): "
                              f"{_find_nul(json.loads(text), what)} holds one")
    return json.loads(text)


def _find_nul(value: Any, path: str) -> str:
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"a key of {path}"
            found = _find_nul(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(value, str) and "\x00" in value:
        return path
    return ""


def _find_unserialisable(value: Any, path: str, seen: set[int]) -> str | None:
    """Depth-first search for the first value ``dumps`` rejects; describe it, or return None."""
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            return f"{path} is a circular reference"
        seen = seen | {id(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{path} is {value!r}, which JSON cannot hold"
    if isinstance(value, _SCALARS) or isinstance(value, _ENCODED):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool, type(None))):
                return f"{path} has a key {key!r} of type {type(key).__name__}"
            found = _find_unserialisable(item, f"{path}[{key!r}]", seen)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_unserialisable(item, f"{path}[{index}]", seen)
            if found:
                return found
        return None
    return f"{path} is of type {type(value).__module__}.{type(value).__qualname__}"
