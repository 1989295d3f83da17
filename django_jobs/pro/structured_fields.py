"""The value field types of structured args (:mod:`django_jobs.pro.structured`, which
re-exports them): each turns a given value into the JSON stored with the job (``dump``,
raising :class:`Invalid`) and the stored JSON back into the typed value ``perform`` gets
(``load``).

Naive datetimes are refused (a ``ValidationError`` naming the field): the job may run on a
node in another time zone, long after it was built, so the zone is the caller's to give.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils import timezone

from ..exceptions import ConfigurationError, JobsError
from ..jsonutil import round_trip
from . import terms

MISSING: Any = object()


class ArgsMismatch(JobsError, ValueError):
    """A stored job's args no longer fit its worker's schema (it changed after the insert)."""


class Invalid(Exception):
    """One bad value: the message, without the path (added by the schema), and the code of
    the ``ValidationError`` it becomes."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def show(value: Any) -> str:
    """``value`` as an error message quotes it (strings as JSON)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


class Field:
    """A field of an args schema. ``required``: None and "" count as missing; ``default``: the
    value used when the field is missing (stored with the job)."""

    kind = "value"

    def __init__(self, *, required: bool = False, default: Any = MISSING) -> None:
        self.required = required
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def dump(self, value: Any) -> Any:
        """The JSON to store for the given ``value``; raise ``Invalid``."""
        raise NotImplementedError

    def load(self, data: Any) -> Any:
        """The typed value for stored ``data`` (trusted to have been dumped)."""
        return data

    def stored_as(self, dumped: Any, data: Any) -> bool:
        """Whether ``data`` read back from the database is what ``dumped`` was stored as."""
        return dumped == data

    def describe(self) -> str:
        return self.kind


class ID(Field):
    """A positive integer id (a numeric string is accepted)."""

    kind = "id"

    def dump(self, value):
        number = integer(value)
        if number < 1:
            raise Invalid(f"{show(value)} is not a valid id (a positive integer)")
        return number


class Int(Field):
    kind = "integer"

    def dump(self, value):
        return integer(value)


INTEGER = re.compile(r"-?[0-9]+")


def integer(value: Any) -> int:
    """An int from an int or a string of digits; raise :class:`Invalid`."""
    if isinstance(value, bool):
        raise Invalid(f"{show(value)} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        return int(value)
    raise Invalid(f"{show(value)} is not an integer")


class Str(Field):
    kind = "string"

    def dump(self, value):
        if not isinstance(value, str):
            raise Invalid(f"{show(value)} is not a string")
        return value


class Float(Field):
    kind = "float"

    def dump(self, value):
        if isinstance(value, bool):
            raise Invalid(f"{show(value)} is not a number")
        try:
            number = float(value) if isinstance(value, (int, float, str)) else None
        except (ValueError, OverflowError):
            number = None
        if number is None or not math.isfinite(number):
            raise Invalid(f"{show(value)} is not a finite number")
        return number

    def load(self, data):
        # A JSON column may give back a whole float as an integer (PostgreSQL's jsonb: 1e16).
        return float(data)

    def stored_as(self, dumped, data) -> bool:
        # 3.602879701896397e16 is stored as the integer it spells, 36028797018963970, whose
        # float is the float dumped.
        if isinstance(data, int) and not isinstance(data, bool):
            return float(data) == dumped
        return dumped == data


class Bool(Field):
    kind = "boolean"

    def dump(self, value):
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise Invalid(f"{show(value)} is not a boolean")


class Dict(Field):
    """Any JSON object."""

    kind = "object"

    def dump(self, value):
        if not isinstance(value, Mapping):
            raise Invalid(f"{show(value)} is not a dict")
        try:
            return round_trip(dict(value), self.name or "dict")
        except Exception as exc:
            raise Invalid(str(exc)) from None


class Enum(Field):
    """One of ``values``: a list of strings or integers, or a Python ``enum.Enum`` class (the
    member's value is stored; ``perform`` gets the member)."""

    kind = "enum"

    def __init__(self, values: Iterable[Any] | type[enum.Enum], **options: Any) -> None:
        if isinstance(values, type) and issubclass(values, enum.Enum):
            self.enum: type[enum.Enum] | None = values
            self.values = [member.value for member in values]
        else:
            self.enum = None
            self.values = list(values)
        if not self.values:
            raise ConfigurationError("Enum needs at least one value")
        super().__init__(**options)

    def dump(self, value):
        if self.enum is not None and isinstance(value, self.enum):
            return value.value
        if self.enum is not None and isinstance(value, str) and value in self.enum.__members__:
            return self.enum[value].value
        if value in self.values and not isinstance(value, bool):
            return value
        raise Invalid(f"{show(value)} is not one of "
                       f"{', '.join(str(v) for v in self.values)}", "invalid_choice")

    def load(self, data):
        if data not in self.values:
            raise ArgsMismatch(f"{show(data)} is not one of "
                               f"{', '.join(str(v) for v in self.values)}")
        return self.enum(data) if self.enum is not None else data


class UUID(Field):
    kind = "uuid"

    def dump(self, value):
        if isinstance(value, uuid.UUID):
            return str(value)
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise Invalid(f"{show(value)} is not a UUID") from None

    def load(self, data):
        return uuid.UUID(data)


class DateTime(Field):
    """A timezone-aware datetime (an ISO 8601 string with an offset is accepted)."""

    kind = "datetime"

    def dump(self, value):
        if isinstance(value, str):
            try:
                value = datetime.datetime.fromisoformat(value)
            except ValueError:
                raise Invalid(f"{show(value)} is not an ISO 8601 datetime") from None
        if not isinstance(value, datetime.datetime):
            raise Invalid(f"{show(value)} is not a datetime")
        if timezone.is_naive(value):
            # Refused rather than guessed: the job may run on a node in another time zone,
            # long after; the caller knows which zone it meant.
            raise Invalid(f"{show(value.isoformat())} has no time zone: give an aware datetime "
                          f"(django.utils.timezone.make_aware(value)) or an ISO 8601 string "
                          f"with an offset", "naive")
        return value.isoformat()

    def load(self, data):
        return datetime.datetime.fromisoformat(data)


class Date(Field):
    kind = "date"

    def dump(self, value):
        if isinstance(value, datetime.datetime):
            raise Invalid(f"{show(value)} is a datetime, not a date")
        if isinstance(value, str):
            try:
                value = datetime.date.fromisoformat(value)
            except ValueError:
                raise Invalid(f"{show(value)} is not an ISO 8601 date") from None
        if not isinstance(value, datetime.date):
            raise Invalid(f"{show(value)} is not a date")
        return value.isoformat()

    def load(self, data):
        return datetime.date.fromisoformat(data)


class Time(Field):
    """A time of day (``datetime.time``; an ISO 8601 string is accepted), with or without a
    UTC offset: stored as given (``"08:15:00"``, ``"08:15:00+02:00"``)."""

    kind = "time"

    def dump(self, value):
        if isinstance(value, str):
            try:
                value = datetime.time.fromisoformat(value)
            except ValueError:
                raise Invalid(f"{show(value)} is not an ISO 8601 time") from None
        if not isinstance(value, datetime.time):
            raise Invalid(f"{show(value)} is not a time")
        return value.isoformat()

    def load(self, data):
        return datetime.time.fromisoformat(data)


class Bytes(Field):
    """Binary data (``bytes``, ``bytearray`` or ``memoryview``), stored as standard base64
    text; ``perform`` gets ``bytes``. A string is refused: encode it first."""

    kind = "bytes"

    def dump(self, value):
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise Invalid(f"{show(value)} is not bytes" + (
                " (encode the string first, e.g. value.encode())"
                if isinstance(value, str) else ""))
        return base64.b64encode(bytes(value)).decode("ascii")

    def load(self, data):
        if not isinstance(data, str):
            raise ArgsMismatch(f"{show(data)} is not base64 text")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ArgsMismatch(f"{show(data)} is not base64 text") from None


class Decimal(Field):
    """A decimal number, stored as text so that no digit is lost."""

    kind = "decimal"

    def dump(self, value):
        if isinstance(value, bool):
            raise Invalid(f"{show(value)} is not a decimal")
        try:
            number = decimal.Decimal(str(value)) if isinstance(
                value, (int, float, str, decimal.Decimal)) else None
        except decimal.InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise Invalid(f"{show(value)} is not a finite decimal")
        return str(number)

    def load(self, data):
        return decimal.Decimal(data)


class Term(Field):
    """Any value :mod:`django_jobs.pro.terms` can store: JSON values, tuples, sets, bytes,
    decimals, datetimes... (tagged JSON, never pickle)."""

    kind = "term"

    def dump(self, value):
        try:
            return terms.encode(value)
        except terms.TermError as exc:
            raise Invalid(str(exc).removeprefix("value: ")) from None

    def load(self, data):
        return terms.decode(data)
