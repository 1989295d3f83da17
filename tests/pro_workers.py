"""Workers of the Pro worker features tests (structured args, recorded results, encrypted
args): module level, so that ``runjobs`` children can import them."""

import base64
import datetime
import decimal
import enum
import random

from django_jobs import Worker
from django_jobs.pro import structured as s

#: Keys for the encrypted workers (32 bytes each, base64), fixed so child processes agree.
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 64))).decode()
QUEUE = "pro"


class Mode(enum.Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class Office:
    office_id = s.ID(required=True)
    floors = s.List(s.Int())


class Owner:
    name = s.Str(required=True)
    share = s.Decimal(default="1")


class BusinessWorker(Worker):
    """Every field type; returns what perform saw, as plain values."""

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
            "types": {name: type(getattr(args, name)).__name__ for name in (
                "ref", "at", "day", "amount", "blob", "office")},
            "office_id": args.office.office_id if args.office else None,
            "owners": [(o.name, o.share) for o in args.owners or []],
            "blob": args.blob,
        }


class RecordedWorker(Worker):
    """Returns args["value"] decoded from its term form, or a value of args["size"] bytes."""

    queue = QUEUE
    recorded = {"limit": 2_000}

    def perform(self, job):
        if "size" in job.args:  # random bytes: they do not compress
            return random.Random(job.args["size"]).randbytes(job.args["size"])
        return {"n": job.args.get("n", 0), "at": datetime.date(2026, 12, 2),
                "price": decimal.Decimal("9.90"), "pair": (1, 2)}


class PlainWorker(Worker):
    queue = QUEUE

    def perform(self, job):
        return {"ignored": True}


def current_keys():
    return [KEY_B, KEY_A]


class SecretWorker(Worker):
    """Encrypted with the keys of a callable; returns the secret it was given (recorded)."""

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
