"""Cron: the leader inserts a job for every run of every cron entry, exactly once per slot.

Entries come from ``DJANGO_JOBS["CRONTAB"]`` (mirrored into the cron table by the leader, as
``source = settings``) and from the cron table itself (``source = database``: the admin and
``manage.py jobs cron``). An entry without a time zone of its own reads its expression in
``DJANGO_JOBS["CRON_TIMEZONE"]`` (UTC by default).

The leader's cron plugin (a receiver of ``leader_tick``) asks the ``CronEntry`` manager which
entries are due, builds each slot's job from ``CronEntry.job_spec`` and inserts them.

Exactly once: each job carries ``meta["cron_name"]`` and ``meta["cron_slot"]`` (the run time)
and is unique on those two keys in every state, for ever. The unique index settles any race
(two leaders for a moment, a leader change in the middle of a minute): a slot can be offered
any number of times and is inserted once. Slots are offered from the entry's last inserted slot
(or its creation) onwards, within its window: ``catch_up`` seconds, or one minute of grace
when catch-up is off, which covers a leader change. Older missed slots are skipped.

``@reboot`` entries run once per cluster start. The cluster keeps a marker in the peer table
(``django_jobs:cluster``) that the leader renews; when a leader finds it missing or expired
(no leader for ``CLUSTER_TTL`` seconds), the cluster has started afresh: a new boot id is
written and each ``@reboot`` entry is inserted once for it.
"""

from __future__ import annotations

import datetime
import logging
import weakref
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..build import new_job
from ..conf import SETTING_NAME, jobs_settings
from ..crontab import CronError, timezone_named
from ..engines import Engine
from ..exceptions import ConfigurationError, InvalidJobError
from ..insertion import insert_all
from ..models import CronEntry, Peer
from ..models.cron import (CRON_JOB_OPTIONS, ENTRY_OPTIONS, EXPRESSION_MAX_LENGTH,
                           MAX_CATCH_UP, NAME_MAX_LENGTH, check_entry_fields, entry_validators)
from ..registry import resolve_worker
from .base import Plugin, Problem

__all__ = ["CLUSTER_MARKER", "CLUSTER_TTL", "CRON_JOB_OPTIONS", "ENTRY_OPTIONS",
           "EXPRESSION_MAX_LENGTH", "GRACE", "MAX_CATCH_UP", "NAME_MAX_LENGTH", "REPORTED_IDS",
           "Cron", "next_runs", "parse_crontab", "validate_entry"]

logger = logging.getLogger("django_jobs.cron")

#: Seconds of lateness allowed to a slot when catch-up is off (covers a leader change).
GRACE = 60.0
CLUSTER_MARKER = "django_jobs:cluster"
CLUSTER_TTL = datetime.timedelta(seconds=60)
#: The leader renews the marker this many times per TTL (every 10 s).
MARKER_RENEWALS_PER_TTL = 6
#: Most ids of inserted jobs a run reports to ``plugin_ran`` (the count is always exact).
REPORTED_IDS = 1000
ENTRY_HINT = ("Entries are (expression, worker_path) or (expression, worker_path, options); "
              "see docs/cron.md.")


def validate_entry(expression: str, worker: str, args: Any, options: Any,
                   tz: str | None, catch_up: Any) -> None:
    """Raise InvalidJobError (or CronError) naming what is wrong with a cron entry: its own
    fields, its worker, and every job option (a job is built as ``new()`` builds it)."""
    check_entry_fields(expression, args, options, tz, catch_up)
    resolve_worker(worker)
    new_job(worker, args, **dict(options))


def _validate_model_entry(entry: CronEntry) -> None:
    """``CronEntry.clean``'s check of the worker and job options (see entry_validators)."""
    resolve_worker(entry.worker)
    new_job(entry.worker, entry.args, **dict(entry.options or {}))


if _validate_model_entry not in entry_validators:
    entry_validators.append(_validate_model_entry)


def parse_crontab(crontab: Any) -> list[dict[str, Any]]:
    """Validate ``DJANGO_JOBS["CRONTAB"]``; return one dict per entry.

    Each entry is ``(expression, worker_path)`` or ``(expression, worker_path, options)``
    with options ``args``, ``timezone``, ``name``, ``catch_up`` and the job options
    ``queue``, ``priority``, ``max_attempts``, ``tags``, ``meta``. The name defaults to the
    worker path; two entries of one worker need names. An entry without ``timezone`` gets
    ``""``: it follows ``CRON_TIMEZONE``. Raises ConfigurationError naming the entry.
    """
    if not isinstance(crontab, (list, tuple)):
        raise ConfigurationError(f"CRONTAB must be a list of entries, not {crontab!r}")
    entries, names = [], set()
    for index, item in enumerate(crontab):
        where = f"CRONTAB[{index}]"
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
            raise ConfigurationError(f"{where} must be (expression, worker_path) or "
                                     f"(expression, worker_path, options), not {item!r}")
        expression, worker = item[0], item[1]
        if len(item) == 3 and not isinstance(item[2], dict):
            raise ConfigurationError(f"{where}: options must be a dict, not {item[2]!r}")
        options = dict(item[2]) if len(item) == 3 else {}
        args = options.pop("args", {})
        tz = options.pop("timezone", None)
        name = options.pop("name", worker)
        catch_up = options.pop("catch_up", 0)
        try:
            validate_entry(expression, worker, args, options, tz, catch_up)
        except (InvalidJobError, CronError) as exc:
            raise ConfigurationError(f"{where} ({expression!r}, {worker!r}): {exc}") from None
        if not isinstance(name, str) or not name or len(name) > NAME_MAX_LENGTH:
            raise ConfigurationError(f"{where}: name must be a non-empty string of at most "
                                     f"{NAME_MAX_LENGTH} characters, not {name!r}")
        if name in names:
            raise ConfigurationError(f"{where}: two CRONTAB entries are named {name!r}; give "
                                     f"each entry of one worker a 'name' option")
        names.add(name)
        entries.append({"name": name, "expression": " ".join(expression.split()),
                        "worker": worker, "args": args, "options": options,
                        "timezone": tz or "", "catch_up": catch_up})
    return entries


class Cron(Plugin):
    """Inserts the jobs of due cron entries; runs on the leader every second.

    Options: ``DJANGO_JOBS["CRONTAB"]`` (the static entries, mirrored into the cron table at
    each node's first run as leader) and ``DJANGO_JOBS["CRON_TIMEZONE"]`` (the time zone of
    entries that name none, static or dynamic; read by the entries themselves).
    """

    name = "cron"
    interval = 1.0

    def __init__(self, crontab: Any = ()) -> None:
        """``crontab`` as ``DJANGO_JOBS["CRONTAB"]`` takes it; ConfigurationError when it is
        invalid."""
        super().__init__()
        #: The static entries, as :func:`parse_crontab` returns them.
        self.crontab = parse_crontab(crontab)
        #: Per node: whether its CRONTAB was synced, and when it last renewed the marker.
        self._synced: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._renewed: weakref.WeakKeyDictionary[Any, datetime.datetime] = \
            weakref.WeakKeyDictionary()

    @classmethod
    def from_settings(cls, **overrides: Any) -> Cron:
        cls.check_options(**overrides)
        return cls(overrides.get("crontab", jobs_settings.CRONTAB))

    @classmethod
    def problems(cls, **overrides: Any) -> list[Problem]:
        problems = []
        try:
            parse_crontab(overrides.get("crontab", jobs_settings.CRONTAB))
        except ConfigurationError as exc:
            problems.append(Problem(f"{SETTING_NAME}['CRONTAB'] is invalid: {exc}",
                                    ENTRY_HINT))
        zone = overrides.get("timezone", jobs_settings.CRON_TIMEZONE)
        try:
            if not isinstance(zone, str) or not zone:
                raise CronError(f"time zone must be a non-empty string, not {zone!r}")
            timezone_named(zone)
        except CronError as exc:
            problems.append(Problem(f"{SETTING_NAME}['CRON_TIMEZONE'] is invalid: {exc}.",
                                    "It is the time zone of every cron entry that names "
                                    "none, e.g. 'Europe/Paris'."))
        return problems

    def run(self, node, engine: Engine, now: datetime.datetime) -> dict[str, Any]:
        entries = CronEntry.objects.using(engine.alias)
        if not self._synced.get(node):
            entries.sync_settings(self.crontab)
            self._synced[node] = True
        jobs, advanced = [], []
        for entry, slots in entries.due(now, GRACE):
            try:
                built = []
                for slot in slots:
                    worker, args, options = entry.job_spec(slot)
                    built.append(new_job(worker, args, **options))
            except Exception as exc:  # e.g. its worker was removed: skip it, run the others
                logger.error("cron entry %r skipped: %s", entry.name, exc)
                continue
            jobs += built
            advanced.append((entry, slots[-1]))
        # The reboot marker and the jobs go in one transaction: if the insert fails, the
        # marker is not renewed either and the next run (or leader) tries the reboot again.
        with transaction.atomic(using=engine.alias):
            jobs += self.reboot_jobs(node, engine, now)
            inserted = []
            if jobs:
                inserted = [job.pk for job in insert_all(jobs, using=engine.alias)
                            if not job.conflict]
            for entry, last in advanced:
                entries.advance(entry, last)
        return {"inserted": len(inserted), "ids": inserted[:REPORTED_IDS]}

    def reboot_jobs(self, node, engine, now: datetime.datetime) -> list:
        """Jobs of ``@reboot`` entries when this run finds the cluster freshly started."""
        renewed = self._renewed.get(node)
        if renewed is not None and now - renewed < CLUSTER_TTL / MARKER_RENEWALS_PER_TTL:
            return []
        boot = Peer.objects.using(engine.alias).renew_marker(CLUSTER_MARKER, now, CLUSTER_TTL)
        self._renewed[node] = now
        if boot is None:
            return []
        jobs = []
        for entry in CronEntry.objects.using(engine.alias).rebooting():
            try:
                worker, args, options = entry.job_spec(f"reboot:{boot}")
                jobs.append(new_job(worker, args, **options))
            except Exception as exc:
                logger.error("cron entry %r skipped: %s", entry.name, exc)
        return jobs


def next_runs(now: datetime.datetime | None = None) -> list[tuple[Any, Any]]:
    """(entry, next run) for every cron entry, for listings."""
    now = now or timezone.now()
    rows = []
    for entry in CronEntry.objects.all():
        try:
            rows.append((entry, entry.next_run(now)))
        except Exception:
            rows.append((entry, "invalid"))
    return rows
