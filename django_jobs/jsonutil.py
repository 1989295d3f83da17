"""JSON encoding of job args and meta, with errors that name the offending value.

Args and meta are stored as JSON. They are encoded once, when a job is built, with Django's
``DjangoJSONEncoder`` (so datetimes, dates, times, timedeltas, decimals and UUIDs become strings,
exactly as they would read back from the database) and decoded again, so the job in memory holds
what a worker will later receive (a float written with an exponent, ``1e+16`` and above, is
read as the whole number it spells, and -0.0 as 0.0, as PostgreSQL returns them). Refused on
every database alike, because PostgreSQL's ``jsonb`` cannot store them: ``NaN`` and
infinities, NUL characters, and lone surrogates (``"\ud800"``: half of a UTF-16 pair, which no
UTF-8 text holds). Values may nest at most
:data:`MAX_DEPTH` levels: deeper ones would exhaust Python's recursion limit where the job is
read back (a node's fetch, the admin's job page).
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

#: How deep args and meta may nest (a dict or list inside another counts one level).
MAX_DEPTH = 100

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
    """A copy of ``value`` if a JSON round trip would give it back unchanged: ASCII string
    keys, and values of exactly str (ASCII, without NUL), int (below 2**53), bool or None.
    None otherwise:
    nested containers, floats (read back as the databases give them), other text (a lone
    surrogate must be refused), dates, subclasses... take the full round trip."""
    for key, item in value.items():
        if type(key) is not str or not key.isascii() or "\x00" in key:
            return None
        kind = type(item)
        if kind is str:
            if not item.isascii() or "\x00" in item:
                return None
        elif kind is int:
            if not -_FLAT_INT < item < _FLAT_INT:  # huge ones: the round trip judges them
                return None
        elif not (kind is bool or item is None):
            return None
    return dict(value)


#: Integers of flat args copied as they are: any float reads them back exactly.
_FLAT_INT = 2 ** 53


def round_trip(value: Any, what: str) -> Any:
    """Return ``value`` as it will read back from the database.

    Raises :class:`InvalidJobError` naming the first value that JSON cannot hold, with its path
    (``args['user']['tags'][2]``) and type, when ``value`` is not serialisable; and when it
    holds a NUL character or a lone surrogate, or nests deeper than :data:`MAX_DEPTH`.

    A flat dict of plain values (the usual job args) is copied without encoding: the round
    trip would return it unchanged.
    """
    if type(value) is dict:
        copy = _flat_copy(value)
        if copy is not None:
            return copy
    try:
        text = dumps(value)
        loaded = json.loads(text, parse_float=_parse_float)
    except RecursionError:
        raise InvalidJobError(f"{what} nests too deeply; the limit is {MAX_DEPTH} levels"
                              ) from None
    except (TypeError, ValueError) as exc:
        bad = _find_unserialisable(value, what, set())
        detail = bad or str(exc)
        raise InvalidJobError(f"{what} must be JSON serialisable: {detail}") from None
    # Cheap bounds first (str.count and "in" run in C): a value cannot nest deeper than the
    # brackets its text holds, and the encoder writes NUL as \u0000 and every surrogate as
    # \udXXX (its output is ASCII).
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(loaded) > MAX_DEPTH:
        raise InvalidJobError(f"{what} nests too deeply; the limit is {MAX_DEPTH} levels")
    if "\\u0000" in text:
        # PostgreSQL's jsonb cannot store NUL; refuse it on every engine alike. (The text of a
        # backslash followed by "u0000" is written \\u0000 too: only a NUL found counts.)
        bad = _find_nul(loaded, what)
        if bad:
            raise InvalidJobError(f"{what} must not contain NUL characters (\\x00): "
                                  f"{bad} holds one")
    if "\\ud" in text:
        bad = _find_surrogate(loaded, what)
        if bad:  # a pair written as two code points reads back as one character: valid
            raise InvalidJobError(f"{what} must be valid Unicode text: {bad} holds a lone "
                                  f"surrogate (half of a UTF-16 pair)")
    return loaded


def _parse_float(text: str) -> float | int:
    """A float as the databases give it back. Python writes floats of 1e16 and more with an
    exponent (``1.2345678901234567e+25``); PostgreSQL's jsonb stores that as the decimal
    number it spells and returns the integer 12345678901234567000000000, not the float.
    Read it as that integer on every database alike (its ``float()`` is the float given).
    Likewise -0.0 is read as 0.0: jsonb's numbers have no negative zero."""
    if "e+" in text:
        return int(decimal.Decimal(text))
    return float(text) + 0.0  # -0.0 + 0.0 is 0.0


def _depth(value: Any) -> int:
    """How many dicts and lists deep ``value`` nests (iterative: no recursion limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1)
                         for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _find_surrogate(value: Any, path: str) -> str:
    if isinstance(value, dict):
        for key, item in value.items():
            if not _valid_text(key):
                return f"a key of {path}"
            found = _find_surrogate(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_surrogate(item, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(value, str) and not _valid_text(value):
        return path
    return ""


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
