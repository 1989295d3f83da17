"""Workers of the Pro worker features tests (structured args, recorded results, encrypted
args): module level, so that ``runjobs`` children can import them. Also two helpers those
tests share."""

import base64
import datetime
import decimal
import enum
import gc
import hashlib
import random
import time
import unittest

from django.db import connection

from django_jobs import Worker, registry
from django_jobs.exceptions import ConfigurationError
from django_jobs.pro import structured as s
from django_jobs.pro import terms

#: Keys for the encrypted workers (32 bytes each, base64), fixed so child processes agree.
#: KEY_A is tests.settings.JOBS_TEST_KEY, the one key of DJANGO_JOBS["ENCRYPTION_KEYS"].
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 64))).decode()
#: A key no worker knows (a job sealed with it has lost its key).
KEY_C = base64.b64encode(bytes(range(64, 96))).decode()
QUEUE = "pro"

#: What SealedWorker.perform saw (in this process; children keep their own).
SEEN: list = []


def digest(text: str) -> str:
    """What SealedWorker records instead of the secret it was given."""
    return hashlib.sha256(text.encode()).hexdigest()


class Mode(enum.Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class Office:
    office_id = s.ID(required=True)
    floors = s.List(s.Int())


class Owner:
    name = s.Str(required=True)
    share = s.Decimal(default="1")


#: The fields of BusinessWorker.Args whose Python type perform reports.
TYPED_FIELDS = ("id", "name", "ratio", "active", "extra", "mode", "kind", "ref", "at", "day",
                "amount", "tags", "office", "owners", "blob")


class BusinessWorker(Worker):
    """Every field type; returns what perform saw, as plain values (recorded)."""

    queue = QUEUE
    recorded = True

    class Args:
        id = s.ID(required=True)
        name = s.Str(required=True)
        ratio = s.Float()
        active = s.Bool(default=True)
        extra = s.Dict()
        mode = s.Enum(["enabled", "disabled", "paused"], default="enabled")
        kind = s.Enum(Mode)
        ref = s.UUID()
        at = s.DateTime()
        day = s.Date()
        amount = s.Decimal()
        tags = s.List(s.Str())
        office = s.One(Office)
        owners = s.Many(Owner)
        blob = s.Term()

    def perform(self, job):
        args = job.args
        return {
            "id": args.id, "mode": args.mode, "kind": args.kind.value if args.kind else None,
            "kind_is_member": isinstance(args.kind, Mode),
            "types": {name: type(getattr(args, name)).__name__ for name in TYPED_FIELDS},
            "ratio": args.ratio, "ref": args.ref, "at": args.at, "day": args.day,
            "amount": args.amount, "tags": args.tags, "extra": args.extra,
            "office_id": args.office.office_id if args.office else None,
            "floors": args.office.floors if args.office else None,
            "owners": [(o.name, o.share) for o in args.owners or []],
            "blob": args.blob,
        }


class MomentWorker(Worker):
    """Times, bytes and datetimes in structured args; returns what perform saw (recorded:
    terms keep the types)."""

    queue = QUEUE
    recorded = True

    class Args:
        opens = s.Time(required=True)
        closes = s.Time()
        payload = s.Bytes()
        when = s.DateTime()
        slots = s.List(s.Time())

    def perform(self, job):
        args = job.args
        values = {name: getattr(args, name) for name in ("opens", "closes", "payload", "when",
                                                           "slots")}
        return {**values, "types": {name: type(value).__name__
                                    for name, value in values.items()}}


class RecordedWorker(Worker):
    """Returns ``args["value"]`` decoded from its term form, a value terms cannot encode with
    ``args["opaque"]``, None with ``args["none"]``, a value of ``args["size"]`` random bytes
    (they do not compress), or a fixed dict."""

    queue = QUEUE
    recorded = {"limit": 2_000}

    def perform(self, job):
        if "value" in job.args:
            return terms.decode(job.args["value"])
        if job.args.get("opaque"):  # cannot be encoded as a term
            return {"rows": [object()]}
        if job.args.get("none"):
            return None
        if "size" in job.args:
            return random.Random(job.args["size"]).randbytes(job.args["size"])
        return {"n": job.args.get("n", 0), "at": datetime.date(2026, 12, 2),
                "price": decimal.Decimal("9.90"), "pair": (1, 2)}


class RecordedToWorker(Worker):
    """Records under ``meta["price"]`` (Oban Pro's ``to:``): returns ``args["value"]`` decoded
    from its term form, or a fixed dict."""

    queue = QUEUE
    recorded = {"to": "price", "limit": 2_000}

    def perform(self, job):
        if "value" in job.args:
            return terms.decode(job.args["value"])
        return {"sku": job.args.get("sku"), "price": decimal.Decimal("9.90")}


class PlainWorker(Worker):
    """Not recorded: its return value is dropped."""

    queue = QUEUE

    def perform(self, job):
        return {"ignored": True}


def current_keys():
    return [KEY_B, KEY_A]


class SecretWorker(Worker):
    """Encrypted with the keys of a callable (KEY_B first, KEY_A second: jobs sealed with
    KEY_A still open); unique by meta; returns the secret it was given (recorded)."""

    queue = QUEUE
    encrypted = {"key": "tests.pro_workers.current_keys"}
    recorded = True
    unique = {"fields": ["worker", "meta"], "keys": ["ref"], "period": 60}

    def perform(self, job):
        return {"secret": job.args["secret"]}


class SettingsSecretWorker(Worker):
    """Encrypted with DJANGO_JOBS["ENCRYPTION_KEYS"], structured and recorded together."""

    queue = QUEUE
    encrypted = True
    recorded = True

    class Args:
        card = s.Str(required=True)
        amount = s.Decimal(required=True)

    def perform(self, job):
        return {"last4": job.args.card[-4:], "amount": job.args.amount}


class SealedWorker(Worker):
    """Encrypted with DJANGO_JOBS["ENCRYPTION_KEYS"] and recorded: records the SHA-256 of
    ``args["secret"]``, never the secret, so tests see that perform got the plaintext while
    nothing written holds it. ``fail``: raise (without the secret); ``hold``: run that many
    seconds in Python code (interruptible)."""

    queue = QUEUE
    encrypted = True
    recorded = True

    def perform(self, job):
        SEEN.append(dict(job.args))
        if job.args.get("fail"):
            raise RuntimeError("failing on purpose")
        if job.args.get("hold"):
            deadline = time.monotonic() + job.args["hold"]
            while time.monotonic() < deadline:
                time.sleep(0.01)
        return {"sha256": digest(job.args["secret"])}


class OtherSealedWorker(SealedWorker):
    """Same keys as SealedWorker, another worker path: a row moved here must not open."""


#: What box_keys returns (tests change it and put it back): a list of keys, or an exception
#: to raise.
KEY_BOX: dict = {"keys": [KEY_A]}


def box_keys():
    value = KEY_BOX["keys"]
    if isinstance(value, BaseException):
        raise value
    return value


class BoxKeyWorker(Worker):
    """Encrypted with the keys box_keys returns."""

    queue = QUEUE
    encrypted = {"key": "tests.pro_workers.box_keys"}

    def perform(self, job):
        SEEN.append(dict(job.args))


# -- helpers of the tests -----------------------------------------------------------------------


def expected_failure_on_postgresql(test):
    """``unittest.expectedFailure`` when the tests run on PostgreSQL (a bug seen only there)."""
    return unittest.expectedFailure(test) if connection.vendor == "postgresql" else test


def definition_error(name: str, attrs: dict, module: str = __name__) -> str:
    """The ConfigurationError message of defining a worker class ``name`` with ``attrs`` (in
    queue QUEUE); the broken class is collected afterwards, and checked to be out of the
    worker registry (where it would break the checks and every later register_feature)."""
    message = None
    try:
        type(name, (Worker,), {"__module__": module, "queue": QUEUE, **attrs})
    except ConfigurationError as exc:
        message = str(exc)
    gc.collect()
    leftover = [w for w in registry.workers() if w.__name__ == name]
    assert not leftover, f"the broken worker {name} is still registered"
    if message is None:
        raise AssertionError(f"defining {name} raised no ConfigurationError")
    return message
