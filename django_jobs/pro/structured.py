"""Structured args: a worker declares the shape of its args; they are checked when a job is
built and handed to ``perform`` typed, with attribute access.

::

    from django_jobs import Worker
    from django_jobs.pro import structured as s


    class Office:
        office_id = s.ID(required=True)
        floors = s.List(s.Int())


    class BusinessWorker(Worker):
        class Args:
            id = s.ID(required=True)
            name = s.Str(required=True)
            mode = s.Enum(["enabled", "disabled", "paused"], default="enabled")
            data = s.One(Office, required=True)
            owners = s.Many(Owner)
            since = s.Date()

        def perform(self, job):
            job.args.mode             # "enabled"
            job.args.data.office_id   # 12
            job.args.since            # datetime.date(2026, 1, 5)

``BusinessWorker.new({"id": 1, "name": "Acme", "mode": "unknown", "data": {}})`` raises
Django's ``ValidationError`` naming every bad field with its path, all at once
(``mode: "unknown" is not one of enabled, disabled, paused``, ``data.office_id: this field is
required``); unknown keys are refused. What is stored is plain JSON (enums as their values,
UUIDs, datetimes, dates, times and decimals as text, bytes as base64, terms as tagged JSON);
before ``perform`` it is cast back. Naive datetimes are refused. A stored row that no longer
fits the schema (the schema changed after it was enqueued) fails that attempt with a clear
error.

The value field types live in :mod:`django_jobs.pro.structured_fields`; this module re-exports
them beside the containers (``List``, ``One``, ``Many``) and the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from ..exceptions import ConfigurationError
from ..features import Attempt, Feature
from .structured_fields import (ID, MISSING, UUID, ArgsMismatch, Bool, Bytes, Date, DateTime,
                                Decimal, Dict, Enum, Field, Float, Int, Invalid, Str, Term, Time,
                                show)

__all__ = ["ID", "UUID", "ArgsMismatch", "ArgsObject", "Bool", "Bytes", "Date", "DateTime",
           "Decimal", "Dict", "Enum", "Field", "Float", "Int", "List", "Many", "One", "Schema",
           "Str", "Structured", "Term", "Time"]

class List(Field):
    """A list of values of one field type: ``List(Int())``."""

    kind = "list"

    def __init__(self, of: Field, **options: Any) -> None:
        if not isinstance(of, Field):
            raise ConfigurationError(f"List needs a field for its items, not {of!r}")
        self.of = of
        super().__init__(**options)

    def dump(self, value):
        raise AssertionError("lists are dumped by the schema, item by item")

    def describe(self) -> str:
        return f"list of {self.of.describe()}"


class One(Field):
    """A nested object of another schema class: ``One(Address)``."""

    kind = "object"

    def __init__(self, schema: type, **options: Any) -> None:
        self.schema = Schema.of(schema)
        super().__init__(**options)

    def dump(self, value):
        raise AssertionError("nested objects are dumped by the schema")


class Many(One):
    """A list of nested objects of another schema class: ``Many(Line)``."""

    kind = "list of objects"


class ArgsObject:
    """Typed args with attribute access (``job.args.mode``); ``args["mode"]`` works too.
    Optional fields that were not given read as None."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"args have no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArgsObject):
            return self._values == other._values
        return NotImplemented

    def __repr__(self) -> str:
        inside = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Args({inside})"

    def to_dict(self) -> dict[str, Any]:
        """The typed values as a dict (nested objects as dicts too)."""
        return {k: _plain(v) for k, v in self._values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, ArgsObject):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Schema:
    """The fields of a schema class, in definition order (base classes' fields first)."""

    _cache: dict[type, Schema] = {}

    def __init__(self, owner: type, fields: dict[str, Field]) -> None:
        self.owner = owner
        self.fields = fields

    @classmethod
    def of(cls, owner: type) -> Schema:
        if isinstance(owner, Schema):
            return owner
        if not isinstance(owner, type):
            raise ConfigurationError(f"a schema is a class of fields, not {owner!r}")
        cached = cls._cache.get(owner)
        if cached is not None:
            return cached
        fields: dict[str, Field] = {}
        for klass in reversed(owner.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Field):
                    fields[name] = value
        if not fields:
            raise ConfigurationError(f"schema {owner.__qualname__} declares no fields (give "
                                     f"it attributes such as id = structured.ID())")
        for name, field in fields.items():
            field.name = field.name or name
            if field.default is not MISSING and field.default not in (None, ""):
                errors: list[tuple[str, str, str]] = []
                schema = cls(owner, {name: field})
                schema._dump_field(field, field.default, name, errors)
                if errors:
                    raise ConfigurationError(f"{owner.__qualname__}.{name}: default "
                                             f"{show(field.default)}: {errors[0][1]}")
        schema = cls._cache[owner] = cls(owner, fields)
        return schema

    # -- built: validate and store --------------------------------------------------------------

    def dump(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON to store for ``args``; raise ``ValidationError`` naming every bad field."""
        errors: list[tuple[str, str, str]] = []
        stored = self._dump_object(args, "", errors)
        if errors:
            # The message is %-formatted with params by Django: escape what it holds.
            raise ValidationError([ValidationError(f"{path}: {message}".replace("%", "%%"),
                                                   code=code, params={"path": path})
                                   for path, message, code in errors])
        return stored

    def _dump_object(self, values: Any, prefix: str, errors: list) -> dict[str, Any]:
        if not isinstance(values, Mapping):
            errors.append((prefix.removesuffix(".") or "args", f"{show(values)} is not an "
                           f"object", "invalid"))
            return {}
        stored = {}
        for key in values:
            if key not in self.fields:
                path = f"{prefix}{key}"
                errors.append((path, f"unknown field (fields: {', '.join(self.fields)})",
                               "unknown"))
        for name, field in self.fields.items():
            path = f"{prefix}{name}"
            value = values.get(name, MISSING)
            if value is MISSING or value is None or value == "":
                if field.default is not MISSING and field.default not in (None, ""):
                    value = field.default
                elif field.required:
                    errors.append((path, "this field is required", "required"))
                    continue
                else:
                    continue
            dumped = self._dump_field(field, value, path, errors)
            if dumped is not MISSING:
                stored[name] = dumped
        return stored

    def _dump_field(self, field: Field, value: Any, path: str, errors: list) -> Any:
        if isinstance(field, Many):
            if not isinstance(value, (list, tuple)):
                errors.append((path, f"{show(value)} is not a list", "invalid"))
                return MISSING
            return [field.schema._dump_object(item, f"{path}[{i}].", errors)
                    for i, item in enumerate(value)]
        if isinstance(field, One):
            return field.schema._dump_object(value, f"{path}.", errors)
        if isinstance(field, List):
            if not isinstance(value, (list, tuple)):
                errors.append((path, f"{show(value)} is not a list", "invalid"))
                return MISSING
            items = [self._dump_field(field.of, item, f"{path}[{i}]", errors)
                     for i, item in enumerate(value)]
            return [item for item in items if item is not MISSING]
        try:
            return field.dump(value)
        except Invalid as exc:
            errors.append((path, str(exc), exc.code))
            return MISSING

    # -- run: cast what was stored ------------------------------------------------------------

    def load(self, stored: Any, prefix: str = "", *, quote: bool = True) -> ArgsObject:
        """Typed args from stored JSON; raise :class:`ArgsMismatch` naming the first field
        that does not fit, and the stored value unless ``quote`` is False (args that must not
        appear in error entries: those of an encrypted worker)."""
        if not isinstance(stored, Mapping):
            raise ArgsMismatch(f"{prefix.removesuffix('.') or 'args'}: "
                               f"{self._value(stored)} is not an object")
        unknown = [key for key in stored if key not in self.fields]
        if unknown:
            raise ArgsMismatch(f"{prefix}{unknown[0]}: not a field of "
                               f"{self.owner.__qualname__} (fields: {', '.join(self.fields)})")
        values = {}
        for name, field in self.fields.items():
            path = f"{prefix}{name}"
            if name not in stored or stored[name] is None:
                if field.required:
                    raise ArgsMismatch(f"{path}: this field is required")
                values[name] = None
                continue
            values[name] = self._load_field(field, stored[name], path, quote)
        return ArgsObject(values)

    @staticmethod
    def _value(data: Any, quote: bool = True) -> str:
        return show(data) if quote else "the stored value"

    def _load_field(self, field: Field, data: Any, path: str, quote: bool) -> Any:
        shown = self._value(data, quote)
        if isinstance(field, Many):
            if not isinstance(data, list):
                raise ArgsMismatch(f"{path}: {shown} is not a list")
            return [field.schema.load(item, f"{path}[{i}].", quote=quote)
                    for i, item in enumerate(data)]
        if isinstance(field, One):
            return field.schema.load(data, f"{path}.", quote=quote)
        if isinstance(field, List):
            if not isinstance(data, list):
                raise ArgsMismatch(f"{path}: {shown} is not a list")
            return [self._load_field(field.of, item, f"{path}[{i}]", quote)
                    for i, item in enumerate(data)]
        generic = f"{path}: {shown} is not a stored {field.describe()}"
        try:
            typed = field.load(data)
            # What was stored must dump to itself: a changed type (say, str -> int) shows here.
            again = field.dump(typed)
        except (ArgsMismatch, Invalid) as exc:  # the field says why, quoting the value
            raise ArgsMismatch(f"{path}: {exc}" if quote else generic) from None
        except Exception:  # anything else the stored value makes load or dump raise
            raise ArgsMismatch(generic) from None
        if not field.stored_as(again, data):
            raise ArgsMismatch(generic)
        return typed


class Structured(Feature):
    """The ``Args`` schema of a worker: validated at build, cast before ``perform``."""

    name = "structured"

    def setup(self, worker: type) -> tuple[Schema, bool] | None:
        declared = getattr(worker, "Args", None)
        if declared is None:
            return None
        # The values of an encrypted worker's args never go into an error message.
        return Schema.of(declared), not getattr(worker, "encrypted", None)

    def prepare(self, worker, args, options, config: tuple[Schema, bool]):
        return config[0].dump(args)

    def before(self, attempt: Attempt, config: tuple[Schema, bool]) -> None:
        job = attempt.job
        schema, quote = config
        try:
            typed = schema.load(job.args, quote=quote)
        except ArgsMismatch as exc:
            raise ArgsMismatch(f"the stored args of job {job.pk} no longer fit "
                               f"{schema.owner.__qualname__}: {exc}") from None
        attempt.stored_args = job.args
        job.args = typed

    def after(self, attempt: Attempt, config: tuple[Schema, bool]) -> None:
        stored = getattr(attempt, "stored_args", None)
        if stored is not None:
            attempt.job.args = stored  # what the database holds, for signals and the caller
