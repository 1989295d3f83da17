"""The job browser's search box: ``args.path:value``, ``meta.path:value``, ``worker:``,
``task:``, ``queue:``, ``tag:``, ``state:``, ``node:``, ``chunk:``, plain ids and plain words.

Terms are separated by spaces and all must match (AND); quote a value with spaces
(``args.name:"Ada Lovelace"``). A plain word matches the worker path (case-insensitive
substring) or the dotted path of a ``django.tasks`` task (``meta["task"]`` of the jobs of
django_jobs.tasks); a plain number matches the id. Values of ``args.``/``meta.`` terms are
read as JSON when they parse (``args.n:5`` matches the number 5 and the string "5"), as text
otherwise.
``chunk:ID`` matches the chunk led by job ID: the leader and the members that last ran in it.
"""

from __future__ import annotations

import json
import re
import shlex

from django.db import connections
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

#: Field prefixes a term may name, and the lookup each becomes.
FIELD_LOOKUPS = {
    "worker": "worker__icontains",
    "task": "meta__task__icontains",
    "queue": "queue",
    "state": "state",
    "tag": "tags__contains",
    "node": "attempted_by__0",
    "id": "pk",
    "chunk": "attempted_by__2",
}
_PATH = re.compile(r"^(args|meta)((?:\.[\w-]+)+)$")


class SearchError(ValueError):
    """A search term that cannot be understood (shown to the user as a message)."""


def split_terms(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: fall back to plain splitting
        return text.split()


def tag_q(tag: str, using: str = "default") -> Q:
    """Jobs whose ``tags`` list holds ``tag``."""
    if connections[using].features.supports_json_field_contains:
        return Q(tags__contains=[tag])  # PostgreSQL: jsonb @> '["tag"]'
    # SQLite has no JSON containment; json_each reads the stored list however it was written.
    return Q(RawSQL('EXISTS (SELECT 1 FROM json_each("django_jobs_job"."tags") '
                    "WHERE json_each.value = %s)", [tag], output_field=BooleanField()))


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is also true of "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def _json_values(raw: str) -> list:
    """The values ``raw`` may stand for in a JSON document."""
    values = [raw]
    try:
        parsed = json.loads(raw)
        # NaN, Infinity and 1e999 (read as infinity) are no JSON a database takes.
        json.dumps(parsed, allow_nan=False)
    except (ValueError, RecursionError):
        return values
    if parsed != raw:
        values.insert(0, parsed)
    return values


def term_q(term: str) -> Q:
    """The filter one search term stands for."""
    key, sep, value = term.partition(":")
    if sep and (match := _PATH.match(key)):
        field, path = match.group(1), match.group(2)[1:].replace(".", "__")
        lookup = f"{field}__{path}"
        q = Q()
        for candidate in _json_values(value):
            q |= Q(**{lookup: candidate})
        return q
    if sep and key in FIELD_LOOKUPS:
        if key == "tag":
            return tag_q(value)
        if key in ("id", "chunk"):
            if not _digits(value):
                raise SearchError(f"Search term {key}: needs a number, not {value!r}")
            if key == "chunk":  # members name their leader third in attempted_by
                return Q(pk=int(value)) | Q(attempted_by__2=int(value))
            return Q(pk=int(value))
        return Q(**{FIELD_LOOKUPS[key]: value})
    if _digits(term):
        return Q(pk=int(term))
    return Q(worker__icontains=term) | Q(meta__task__icontains=term)


def search_q(text: str) -> Q:
    """All the terms of ``text`` combined (AND); an empty Q for an empty search."""
    q = Q()
    for term in split_terms(text.strip()):
        q &= term_q(term)
    return q
