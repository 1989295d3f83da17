"""System checks for the ``DJANGO_JOBS`` setting (ids ``django_jobs.E0xx`` / ``W0xx``)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections
from django.utils.module_loading import import_string

from .conf import DEFAULTS, SETTING_NAME, jobs_settings
from .engines import ENGINES
from .exceptions import ConfigurationError
from .models.job import QUEUE_MAX_LENGTH
from .plugins import builtin_problems
from .pro.encrypted import Encrypted, parse_key
from .registry import aliases, is_worker, workers
from .runtime.supervisor import resolve_processes


def _hint(name: Any, choices: Any) -> str | None:
    if not isinstance(name, str):
        return None
    close = difflib.get_close_matches(name, [c for c in choices if isinstance(c, str)], n=1)
    return f"Did you mean {close[0]!r}?" if close else None


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """Validate ``DJANGO_JOBS``: known keys, queue limits, database alias, time zones."""
    errors: list = []
    raw = getattr(settings, SETTING_NAME, {})
    if not isinstance(raw, dict):
        return [Error(f"{SETTING_NAME} must be a dict, not {type(raw).__name__}.",
                      id="django_jobs.E001")]
    for key in raw:
        if key not in DEFAULTS:
            errors.append(Error(f"{SETTING_NAME} has an unknown key {key!r}.",
                                hint=_hint(key, DEFAULTS) or "Valid keys: " + ", ".join(DEFAULTS),
                                id="django_jobs.E002"))
    errors += _check_queues(jobs_settings.QUEUES)
    alias = jobs_settings.DATABASE
    if not isinstance(alias, str):
        errors.append(Error(f"{SETTING_NAME}['DATABASE'] must be the alias of a database in "
                            f"DATABASES, not {alias!r}.", id="django_jobs.E004"))
    elif alias not in settings.DATABASES:
        errors.append(Error(f"{SETTING_NAME}['DATABASE'] names {alias!r}, which is not in "
                            f"DATABASES.", hint=_hint(alias, settings.DATABASES),
                            id="django_jobs.E004"))
    else:
        errors += _check_database(alias)
    if not settings.USE_TZ:
        errors.append(Error("django_jobs needs USE_TZ = True: job times are stored in UTC.",
                            id="django_jobs.E005"))
    grace = jobs_settings.GRACE_PERIOD
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        errors.append(Error(f"{SETTING_NAME}['GRACE_PERIOD'] must be a number of seconds of at "
                            f"least 0, not {grace!r}.", id="django_jobs.E008"))
    errors += _check_plugins()
    try:
        resolve_processes(jobs_settings.PROCESSES)
    except ValueError as exc:
        errors.append(Error(f"{SETTING_NAME}['PROCESSES']: {exc}.",
                            hint="Worker processes of one runjobs: 1 (the default), a larger "
                                 "integer, or 'auto' for one per core.", id="django_jobs.E020"))
    errors += _check_remote_workers(jobs_settings.REMOTE_WORKERS)
    testing = jobs_settings.TESTING
    if testing not in (None, "inline", "manual"):
        errors.append(Error(f"{SETTING_NAME}['TESTING'] must be None, 'inline' or 'manual', "
                            f"not {testing!r}.", id="django_jobs.E007"))
    return errors


@register(Tags.compatibility)
def check_aliases(app_configs: Any = None, **kwargs: Any) -> list:
    """Worker aliases (``aliases = [...]``) must each name one worker, and no alias may be the
    path of a worker that exists: the job would run on one of two classes."""
    errors: list = []
    for alias, claimants in sorted(aliases().items()):
        if len(claimants) > 1:
            names = ", ".join(sorted(c.worker_path for c in claimants))
            errors.append(Error(f"Worker alias {alias!r} is claimed by {names}.",
                                hint="An alias names the one worker that jobs stored under the "
                                     "old path run on; remove it from all but one.",
                                id="django_jobs.E010"))
        try:
            existing = import_string(alias)
        except ImportError:
            continue
        if is_worker(existing):
            errors.append(Error(f"Worker alias {alias!r} of {claimants[0].worker_path} is the "
                                f"path of an existing worker.",
                                hint="Jobs stored under that path run on that worker; remove "
                                     "the alias, or the old class.",
                                id="django_jobs.E011"))
    return errors


@register(Tags.compatibility)
def check_encryption(app_configs: Any = None, **kwargs: Any) -> list:
    """``ENCRYPTION_KEYS`` must be well-formed and distinct (E012), and every encrypted worker
    must have a key (E013). Messages never show key material."""
    errors: list = []
    keys = jobs_settings.ENCRYPTION_KEYS
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
        errors.append(Error(f"{SETTING_NAME}['ENCRYPTION_KEYS'] must be a list of base64 keys, "
                            f"not a {type(keys).__name__}.", id="django_jobs.E012"))
        keys = []
    parsed = []
    for index, key in enumerate(keys):
        try:
            parsed.append(parse_key(key, f"{SETTING_NAME}['ENCRYPTION_KEYS'][{index}]"))
        except ConfigurationError as exc:
            errors.append(Error(f"{exc}.", id="django_jobs.E012", hint=KEY_HINT))
    if len(set(parsed)) != len(parsed):
        errors.append(Error(f"{SETTING_NAME}['ENCRYPTION_KEYS'] lists the same key twice.",
                            hint="Each key once, newest first.", id="django_jobs.E012"))
    feature = Encrypted()
    for worker in workers():
        try:
            source = feature.setup(worker)
            if source is not None:
                source.keys()
        except ConfigurationError as exc:
            errors.append(Error(f"Encrypted worker {worker.worker_path}: {exc}.",
                                hint=KEY_HINT, id="django_jobs.E013"))
    return errors


KEY_HINT = ("Keys are 32 random bytes in base64: python -c \"import base64, os; "
            "print(base64.b64encode(os.urandom(32)).decode())\"")


def _check_queues(queues: Any) -> list:
    if not isinstance(queues, dict):
        return [Error(f"{SETTING_NAME}['QUEUES'] must map queue names to limits, "
                      f"not {queues!r}.", hint='For example {"default": 10}.',
                      id="django_jobs.E003")]
    errors = []
    for name, limit in queues.items():
        if (not isinstance(name, str) or not name or name != name.strip()
                or len(name) > QUEUE_MAX_LENGTH):
            errors.append(Error(f"Queue name {name!r} in {SETTING_NAME}['QUEUES'] must be a "
                                f"non-empty string of at most {QUEUE_MAX_LENGTH} characters "
                                f"without surrounding spaces.", id="django_jobs.E003"))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            errors.append(Error(f"Queue {name!r} has limit {limit!r}; a limit is the number of "
                                f"jobs run at once on a node, an integer of at least 1.",
                                id="django_jobs.E003"))
    return errors


def _check_database(alias: str) -> list:
    connection = connections[alias]
    if connection.vendor not in ENGINES:
        return [Error(f"Database {alias!r} is {connection.vendor}; django_jobs supports "
                      f"{' and '.join(sorted(ENGINES))}.", id="django_jobs.E004")]
    # transaction_mode is an OPTION of Django's SQLite backend only.
    if connection.vendor == "sqlite":
        options = connection.settings_dict.get("OPTIONS", {})
        if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
            return [Warning(
                f"SQLite database {alias!r} does not set OPTIONS['transaction_mode'] to "
                f"'IMMEDIATE'.",
                hint="With deferred transactions, concurrent writers (web requests and "
                     "runjobs) can fail at once with 'database is locked' instead of waiting. "
                     "Set OPTIONS = {'transaction_mode': 'IMMEDIATE', 'timeout': 20}.",
                id="django_jobs.W001")]
    return []


#: The check id of each built-in plugin's settings.
PLUGIN_CHECKS = {"pruner": "django_jobs.E006", "lifeline": "django_jobs.E008",
                 "cron": "django_jobs.E009"}


def _check_plugins() -> list:
    """The built-in plugins validate their own options; a problem is an error of the
    plugin's id."""
    return [Error(problem.msg, hint=problem.hint, id=PLUGIN_CHECKS.get(name, "django_jobs.E002"))
            for name, problems in builtin_problems().items() for problem in problems]


#: A dotted module prefix: Python identifiers joined by dots.
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _check_remote_workers(prefixes: Any) -> list:
    """``REMOTE_WORKERS``: a list of dotted module prefixes, such as ``"billing.workers"``."""
    hint = ('A list of dotted module prefixes of workers another deployment runs, for '
            'example ["billing.workers"].')
    if isinstance(prefixes, (str, bytes)) or not isinstance(prefixes, (list, tuple)):
        return [Error(f"{SETTING_NAME}['REMOTE_WORKERS'] must be a list of dotted module "
                      f"prefixes, not {prefixes!r}.", hint=hint, id="django_jobs.E021")]
    return [Error(f"{SETTING_NAME}['REMOTE_WORKERS'][{index}] is {prefix!r}, not a dotted "
                  f"module prefix.", hint=hint, id="django_jobs.E021")
            for index, prefix in enumerate(prefixes)
            if not isinstance(prefix, str) or not _DOTTED.fullmatch(prefix)]
