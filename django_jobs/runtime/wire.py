"""What crosses between a node and its job processes (``executor = "process"``): JSON lines.

A job goes to the child as its row's columns; an outcome comes back as its state, time and
changed columns. Datetimes travel tagged (``{"$dt": iso}``), everything else is JSON already
(columns of JSON type, strings, numbers). No pickle: nothing read from the database, or from
the other process, is ever unpickled.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from ..models import Job
from ..outcome import Outcome

_TAG = "$dt"


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return {_TAG: value.isoformat()}
    raise TypeError(f"{type(value).__name__} cannot cross to or from a job process")


def _hook(value: dict) -> Any:
    if len(value) == 1 and _TAG in value:
        return datetime.datetime.fromisoformat(value[_TAG])
    return value


def encode(message: dict) -> bytes:
    """One message as a line of JSON."""
    return json.dumps(message, default=_default, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict:
    return json.loads(line, object_hook=_hook)


def job_message(job: Job) -> dict:
    """A fetched job as the child rebuilds it: every column, and its database alias."""
    return {"db": job._state.db,
            "fields": {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields}}


def job_from_message(message: dict) -> Job:
    job = Job(**message["fields"])
    job._state.adding = False
    job._state.db = message["db"]
    return job


def outcome_message(outcome: Outcome) -> dict:
    # "becomes", not "state": this message writes nothing; the node writes the outcome
    # through the door.
    return {"job_id": outcome.job_id, "becomes": outcome.state, "at": outcome.at,
            "changes": outcome.changes}


def outcome_from_message(message: dict, job: Job) -> Outcome:
    """The child's outcome, for the parent's ``job`` (the door reads its worker, queue,
    meta and state)."""
    return Outcome(message["job_id"], message["becomes"], message["at"], message["changes"],
                   job)
