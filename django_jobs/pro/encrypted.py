"""Encrypted args: a worker's args are sealed with AES-256-GCM before they are written and
opened just before ``perform``.

::

    DJANGO_JOBS = {"ENCRYPTION_KEYS": [env("JOBS_KEY"), env("JOBS_OLD_KEY")]}

    class PayoutWorker(Worker):
        encrypted = True                          # the keys of DJANGO_JOBS["ENCRYPTION_KEYS"]
        # encrypted = {"key": "myapp.secrets.jobs_key"}   # or a callable returning key(s)

Keys are 32 random bytes in base64 (``python -c "import base64, os;
print(base64.b64encode(os.urandom(32)).decode())"``). Several may be given for rotation: new
jobs are sealed with the first; each stored job names the key it was sealed with (the first 8
hex digits of the key's SHA-256), so jobs sealed with an older key still open, and
``manage.py jobs reencrypt`` moves them to the first key. A job whose key is no longer given
fails its attempt with an error naming the key, and only that job.

The ciphertext is authenticated, with the job's worker path and key id as associated data: a
tampered, truncated or moved row fails its attempt with a clear error and never runs with
garbage. Meta stays plain. The args are never written decrypted: not in the database, the
admin, logs, error entries, or the arguments of signals (``job_started``, ``job_stopped``,
``job_exception`` see the sealed args; only ``perform`` and the job features inside this one,
such as hooks, see them open). Uniqueness by args is refused (the stored args are random
ciphertext); uniqueness by meta works.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

from .. import registry
from ..conf import jobs_settings
from ..exceptions import ConfigurationError, InvalidJobError, JobsError
from ..features import Attempt, Feature
from ..jsonutil import dumps
from ..models.job import Job

#: The one key of sealed args: ``{"encrypted": {"key": key id, "data": base64}}``.
SEALED = "encrypted"
NONCE_BYTES = 12


class DecryptionError(JobsError):
    """A job's args could not be opened: missing key, tampered or truncated ciphertext."""


def parse_key(value: Any, where: str = "key") -> bytes:
    """The 32 bytes of a base64 key (standard or URL-safe alphabet); raise
    ConfigurationError saying what is wrong, without ever showing the key."""
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{where} must be 32 bytes in base64 text, not a "
                                 f"{type(value).__name__}")
    text = value.strip()
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{where} is not valid base64") from None
    if len(raw) != 32:
        raise ConfigurationError(f"{where} is {len(raw)} bytes once decoded; AES-256 needs 32")
    return raw


def key_id(key: bytes) -> str:
    """The name stored with a sealed job: 8 hex digits of the key's SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def setting_keys() -> list[bytes]:
    """``DJANGO_JOBS["ENCRYPTION_KEYS"]``, parsed (newest first)."""
    keys = jobs_settings.ENCRYPTION_KEYS
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
        raise ConfigurationError("DJANGO_JOBS['ENCRYPTION_KEYS'] must be a list of keys")
    return [parse_key(k, f"DJANGO_JOBS['ENCRYPTION_KEYS'][{i}]") for i, k in enumerate(keys)]


class KeySource:
    """Where an encrypted worker's keys come from: the setting, or a callable."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def keys(self) -> list[bytes]:
        """The keys, first one current; raise ConfigurationError when there are none."""
        if self.path is None:
            keys = setting_keys()
            where = "DJANGO_JOBS['ENCRYPTION_KEYS']"
        else:
            where = f"the key callable {self.path}"
            try:
                function = import_string(self.path)
            except ImportError as exc:
                raise ConfigurationError(f"{where} cannot be imported: {exc}") from None
            try:
                supplied = function()
            except Exception as exc:  # its message is not shown: it may hold key material
                raise ConfigurationError(f"{where} raised {type(exc).__name__}") from None
            supplied = supplied if isinstance(supplied, (list, tuple)) else [supplied]
            keys = [parse_key(k, f"key {i} of {where}") for i, k in enumerate(supplied)]
        if not keys:
            raise ConfigurationError(f"{where} gives no key")
        return keys

    def describe(self) -> str:
        return self.path or "DJANGO_JOBS['ENCRYPTION_KEYS']"


def seal(args: Mapping[str, Any], key: bytes, worker_path: str) -> dict[str, Any]:
    """Args as stored: AES-256-GCM of their JSON, bound to the worker path and key id."""
    kid = key_id(key)
    nonce = os.urandom(NONCE_BYTES)
    data = _aesgcm()(key).encrypt(nonce, dumps(dict(args)).encode(), _aad(worker_path, kid))
    return {SEALED: {"key": kid, "data": base64.b64encode(nonce + data).decode("ascii")}}


def is_sealed(args: Any) -> bool:
    return (isinstance(args, Mapping) and set(args) == {SEALED}
            and isinstance(args[SEALED], Mapping))


def open_sealed(args: Any, keys: list[bytes], worker_path: str) -> dict[str, Any]:
    """The args ``seal`` was given; raise :class:`DecryptionError` saying why not (never
    showing key material or plaintext)."""
    if not is_sealed(args):
        raise DecryptionError(f"the args of this {worker_path} job are not encrypted (inserted "
                              f"before the worker was? `manage.py jobs reencrypt` seals them)")
    sealed = args[SEALED]
    kid, data = sealed.get("key"), sealed.get("data")
    by_id = {key_id(key): key for key in keys}
    if kid not in by_id:
        raise DecryptionError(f"this job was sealed with key {kid!r}, which is not among the "
                              f"keys of {worker_path} (known: {', '.join(by_id)})")
    try:
        raw = base64.b64decode(str(data).encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DecryptionError("the sealed args are not valid base64 (the row was "
                              "altered)") from None
    if len(raw) <= NONCE_BYTES + 16:
        raise DecryptionError("the sealed args are truncated (the row was altered)")
    aesgcm = _aesgcm()
    from cryptography.exceptions import InvalidTag
    try:
        plain = aesgcm(by_id[kid]).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                           _aad(worker_path, kid))
    except InvalidTag:
        raise DecryptionError(f"the sealed args failed authentication with key {kid} (the row "
                              f"was altered, or moved from another worker)") from None
    return json.loads(plain)


def _aesgcm():
    """AES-GCM from cryptography, imported on first use: its native bindings cost a process
    about 7 MB, which nodes whose workers encrypt nothing do not pay."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    return AESGCM


def _aad(worker_path: str, kid: str) -> bytes:
    return f"django_jobs:{worker_path}:{kid}".encode()


class Encrypted(Feature):
    """``encrypted = True`` or ``{"key": "dotted.path"}``: args sealed at rest."""

    name = "encrypted"

    def setup(self, worker: type) -> KeySource | None:
        option = getattr(worker, "encrypted", None)
        if option is None or option is False:
            return None
        if option is True:
            source = KeySource(None)
        elif isinstance(option, Mapping) and set(option) == {"key"} and \
                isinstance(option["key"], str) and "." in option["key"]:
            source = KeySource(option["key"])
        else:
            raise ConfigurationError(f"encrypted must be True or {{'key': 'dotted.path.to."
                                     f"callable'}}, not {option!r}")
        unique = worker._defaults.get("unique")
        if unique is not None and "args" in unique.fields:
            raise ConfigurationError("an encrypted worker cannot be unique by args (the stored "
                                     "args are ciphertext); make it unique by meta keys, e.g. "
                                     "unique = {'fields': ['worker', 'meta'], 'keys': [...]}")
        return source

    def build(self, job, options, config: KeySource) -> None:
        unique = getattr(job, "_unique", None)
        if unique is not None and "args" in unique.fields:
            raise InvalidJobError(f"{job.worker} is encrypted: its jobs cannot be unique by args "
                                  f"(use meta keys)")
        try:
            key = config.keys()[0]
        except ConfigurationError as exc:
            raise InvalidJobError(f"{job.worker} is encrypted but {exc}") from None
        job.args = seal(job.args, key, job.worker)

    def before(self, attempt: Attempt, config: KeySource) -> None:
        job = attempt.job
        try:
            keys = config.keys()
        except ConfigurationError as exc:
            raise DecryptionError(str(exc)) from None
        opened = open_sealed(job.args, keys, job.worker)
        attempt.sealed_args = job.args
        job.args = opened

    def after(self, attempt: Attempt, config: KeySource) -> None:
        sealed = getattr(attempt, "sealed_args", None)
        if sealed is not None:
            attempt.job.args = sealed  # nothing outside perform sees the args open


def encrypted_workers(jobs=None) -> dict[str, type]:
    """Stored worker path -> encrypted worker class, aliases included: the workers defined in
    this process, and the workers of the sealed jobs in ``jobs`` (imported by their path)."""
    paths = {}
    if jobs is not None:
        for path in jobs.filter(args__has_key=SEALED).order_by().values_list(
                "worker", flat=True).distinct():
            try:
                registry.resolve_worker(path)
            except Exception:
                continue  # reencrypt_jobs counts these jobs as failed
    for worker in registry.workers():
        if getattr(worker, "encrypted", None) not in (None, False):
            paths[worker.worker_path] = worker
            for alias in worker.__dict__.get("aliases", ()):
                paths[alias] = worker
    return paths


def reencrypt_jobs(*, using: str | None = None, batch: int = 500) -> dict[str, int]:
    """Seal every stored job of an encrypted worker with its first key: jobs sealed with an
    older key are opened and sealed again, and jobs stored in plain text (inserted before the
    worker was encrypted) are sealed. Returns counts: ``resealed``, ``sealed`` (were plain),
    ``current`` (already on the first key), ``failed`` (could not be opened: missing key,
    altered row; left as they are)."""
    counts = {"resealed": 0, "sealed": 0, "current": 0, "failed": 0}
    jobs = Job.objects.using(using) if using else Job.objects.all()
    workers = encrypted_workers(jobs)
    # Sealed jobs of workers that are not (or no longer) encrypted, or cannot be imported.
    counts["failed"] += jobs.filter(args__has_key=SEALED).exclude(worker__in=list(workers)).count()
    for path, worker in workers.items():
        source = Encrypted().setup(worker)
        keys = source.keys()
        current = key_id(keys[0])
        last = 0
        while True:
            with transaction.atomic(using=jobs.db):
                # Lock a chunk, oldest first; a job being built meanwhile is sealed already.
                chunk = list(jobs.select_for_update().filter(worker=path, pk__gt=last)
                             .order_by("pk").only("pk", "args")[:batch])
                for job in chunk:
                    args = job.args
                    if is_sealed(args) and args[SEALED].get("key") == current:
                        counts["current"] += 1
                        continue
                    try:
                        plain = open_sealed(args, keys, path) if is_sealed(args) else args
                    except DecryptionError:
                        counts["failed"] += 1
                        continue
                    counts["resealed" if is_sealed(args) else "sealed"] += 1
                    jobs.filter(pk=job.pk).update(args=seal(plain, keys[0], path))
            if len(chunk) < batch:
                break
            last = chunk[-1].pk
    return counts
