"""Terms: Python values that JSON cannot hold, stored as tagged JSON, never pickled.

``encode(value)`` turns a value into JSON-safe data and ``decode(data)`` turns it back. JSON's
own values (strings, whole numbers, finite floats, booleans, None, lists, dicts with string
keys) pass through unchanged; the others become a one-key object ``{"__term__": [tag,
payload]}``:

=============  ==========================================  =====================
Python         Stored                                      Read back as
=============  ==========================================  =====================
``tuple``      ``["tuple", [items]]``                      ``tuple``
``set``        ``["set", [items]]`` (sorted when possible) ``set``
``frozenset``  ``["frozenset", [items]]``                  ``frozenset``
``bytes``      ``["bytes", "<base64>"]``                   ``bytes``
``Decimal``    ``["decimal", "12.50"]``                    ``Decimal``
``datetime``   ``["datetime", "<ISO 8601>"]``              ``datetime`` (aware stays aware)
``date``       ``["date", "2026-12-02"]``                  ``date``
``time``       ``["time", "12:30:00"]``                    ``time``
``timedelta``  ``["timedelta", [days, seconds, µs]]``      ``timedelta``
``UUID``       ``["uuid", "<hex>"]``                       ``UUID``
float (some)   ``["float", "1e+16"]``                      ``float``
other dicts    ``["dict", [[key, value], ...]]``           ``dict``
=============  ==========================================  =====================

Floats stay JSON numbers, except whole ones, -0.0 and the non-finite ones, which a JSON column
would not give back as such (PostgreSQL's jsonb returns 1e16 as an integer). A dict whose keys
are not all strings, or that has a ``"__term__"`` key of its own, is stored
as pairs, so no stored value is ever mistaken for a tag. Decoding builds only these types: a
stored row can never make the reader import or call anything (which is what pickle does).

``pack`` / ``unpack`` add compression for large values (recorded results): the tagged JSON,
zlib-compressed, in base64 text.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
import zlib
from typing import Any

from ..exceptions import JobsError

TAG = "__term__"


class TermError(JobsError, ValueError):
    """A value that cannot be stored as a term, or stored data that is not a valid term."""


def encode(value: Any, path: str = "value") -> Any:
    """JSON-safe data for ``value``; raise :class:`TermError` naming the path of a value of an
    unsupported type."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        # A whole float (1e16, 2.0), -0.0 and nan/inf are tagged: a JSON column may give a
        # whole float back as an integer (PostgreSQL's jsonb does), and JSON has no -0 or nan.
        if math.isfinite(value) and not value.is_integer():
            return value
        return _tagged("float", repr(value))
    if isinstance(value, list):
        return [encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and TAG not in value:
            return {key: encode(item, f"{path}.{key}") for key, item in value.items()}
        return _tagged("dict", [[encode(key, f"{path} key"), encode(item, f"{path}[{key!r}]")]
                                for key, item in value.items()])
    if isinstance(value, tuple):
        return _tagged("tuple", [encode(item, f"{path}[{i}]") for i, item in enumerate(value)])
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except TypeError:  # mixed types: any order reads back as the same set
            pass
        return _tagged("frozenset" if isinstance(value, frozenset) else "set",
                       [encode(item, f"{path} item") for item in items])
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _tagged("bytes", base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, decimal.Decimal):
        return _tagged("decimal", str(value))
    if isinstance(value, datetime.datetime):
        return _tagged("datetime", value.isoformat())
    if isinstance(value, datetime.date):
        return _tagged("date", value.isoformat())
    if isinstance(value, datetime.time):
        return _tagged("time", value.isoformat())
    if isinstance(value, datetime.timedelta):
        return _tagged("timedelta", [value.days, value.seconds, value.microseconds])
    if isinstance(value, uuid.UUID):
        return _tagged("uuid", value.hex)
    raise TermError(f"{path}: a {type(value).__name__} cannot be stored as a term (supported: "
                    f"JSON values, tuple, set, frozenset, bytes, Decimal, datetime, date, time, "
                    f"timedelta, UUID, dicts with any such keys)")


def _tagged(tag: str, payload: Any) -> dict[str, Any]:
    return {TAG: [tag, payload]}


_DECODERS = {
    "float": float,
    "tuple": lambda items: tuple(decode(i) for i in items),
    "set": lambda items: {decode(i) for i in items},
    "frozenset": lambda items: frozenset(decode(i) for i in items),
    "bytes": lambda text: base64.b64decode(text.encode("ascii"), validate=True),
    "decimal": decimal.Decimal,
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "timedelta": lambda parts: datetime.timedelta(days=parts[0], seconds=parts[1],
                                                  microseconds=parts[2]),
    "uuid": uuid.UUID,
    "dict": lambda pairs: {decode(key): decode(value) for key, value in pairs},
}


def decode(data: Any) -> Any:
    """The value ``encode`` was given; raise :class:`TermError` for data it cannot have
    made."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if isinstance(data, dict):
        if TAG in data:
            tagged = data[TAG]
            if len(data) != 1 or not isinstance(tagged, list) or len(tagged) != 2 \
                    or not isinstance(tagged[0], str) or tagged[0] not in _DECODERS:
                raise TermError(f"not a valid term: {_short(data)}")
            try:
                return _DECODERS[tagged[0]](tagged[1])
            except TermError:
                raise
            except Exception as exc:
                raise TermError(f"not a valid {tagged[0]} term: {_short(data)} ({exc})") from None
        return {key: decode(value) for key, value in data.items()}
    return data


def pack(value: Any) -> str:
    """``value`` as compact text: its term JSON, zlib-compressed, base64."""
    data = json.dumps(encode(value), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(_deflate(data)).decode("ascii")


#: Bytes of term JSON up to which :func:`pack` stores the data instead of deflating it.
STORED_MAX = 256


def _deflate(data: bytes) -> bytes:
    """``data`` as a zlib stream (RFC 1950) that any zlib reader inflates.

    Up to :data:`STORED_MAX` bytes the stream holds one stored block (RFC 1951 3.2.4), built
    here: deflate saves nothing on so little, and zlib's own call releases the GIL, which in
    a busy node hands it to another thread and costs the job a wait to get it back (measured:
    a no-op worker that records its result ran at 0.72 of a plain one, 0.88 without the
    call). Above, zlib deflates with a window no larger than ``data``: a larger one compresses
    nothing better, and zlib's state for the default window (about 256 kB) arrives as fresh
    pages from the kernel in every pool thread call."""
    if len(data) <= STORED_MAX:
        size = len(data)
        # Header 0x78 0x01: deflate, 32 kB window, no dictionary; (0x7801 % 31 == 0). Then
        # BFINAL=1 BTYPE=00, LEN and its complement, the bytes, and their Adler-32 (zlib's
        # checksum call keeps the GIL below 5 kB).
        return (b"\x78\x01\x01" + size.to_bytes(2, "little")
                + (size ^ 0xFFFF).to_bytes(2, "little") + data
                + zlib.adler32(data).to_bytes(4, "big"))
    bits = min(15, max(9, (len(data) - 1).bit_length()))
    compressor = zlib.compressobj(6, zlib.DEFLATED, bits, min(8, max(1, bits - 7)))
    return compressor.compress(data) + compressor.flush()


def unpack(text: str) -> Any:
    """The value :func:`pack` was given."""
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
        data = json.loads(raw)
    except Exception as exc:
        raise TermError(f"not a packed term ({exc})") from None
    return decode(data)


def packed_size(text: str) -> int:
    """Bytes of compressed data in a :func:`pack` result (before base64)."""
    return len(text) * 3 // 4 - text.count("=")


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."
