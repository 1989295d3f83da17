"""Cron: the leader inserts a job for every run of every cron entry, exactly once per slot.

Entries come from ``DJANGO_JOBS["CRONTAB"]`` (mirrored into the cron table by the leader, as
``source = settings``) and from the cron table itself (``source = database``: the admin and
``manage.py jobs cron``).

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
import difflib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..build import new_job, resolve_worker
from ..exceptions import ConfigurationError, InvalidJobError
from ..jsonutil import round_trip
from .base import Plugin
from ..crontab import CronError, parse, timezone_named

logger = logging.getLogger("django_jobs.cron")

#: Options of a CRONTAB entry besides the job options it passes on.
ENTRY_OPTIONS = ("args", "timezone", "name", "catch_up")
#: Job options a cron entry may set (scheduling and uniqueness belong to cron).
CRON_JOB_OPTIONS = ("queue", "priority", "max_attempts", "tags", "meta")
MAX_CATCH_UP = 7 * 86400
#: Column sizes of the cron table.
EXPRESSION_MAX_LENGTH = 128
NAME_MAX_LENGTH = 128
#: Seconds of lateness allowed to a slot when catch-up is off (covers a leader change).
GRACE = 60.0
CLUSTER_MARKER = "django_jobs:cluster"
CLUSTER_TTL = datetime.timedelta(seconds=60)
#: The leader renews the marker this many times per TTL (every 10 s).
MARKER_RENEWALS_PER_TTL = 6


def validate_entry(expression: str, worker: str, args: Any, options: Mapping[str, Any],
                   tz: str | None, catch_up: Any) -> None:
    """Raise InvalidJobError (or CronError) naming what is wrong with a cron entry."""
    if isinstance(expression, str) and len(expression) > EXPRESSION_MAX_LENGTH:
        raise InvalidJobError(f"cron expression is {len(expression)} characters long; the "
                              f"limit is {EXPRESSION_MAX_LENGTH}")
    parse(expression)
    resolve_worker(worker)
    if not isinstance(args, Mapping):
        raise InvalidJobError(f"cron args must be a dict, not {args!r}")
    round_trip(dict(args), "cron args")
    for name in options:
        if name not in CRON_JOB_OPTIONS:
            close = difflib.get_close_matches(name, [*CRON_JOB_OPTIONS, *ENTRY_OPTIONS], n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise InvalidJobError(f"unknown cron option {name!r}{hint} (valid: "
                                  f"{', '.join([*ENTRY_OPTIONS, *CRON_JOB_OPTIONS])})")
    timezone_named(tz)
    if isinstance(catch_up, bool) or not isinstance(catch_up, int) or not \
            0 <= catch_up <= MAX_CATCH_UP:
        raise InvalidJobError(f"catch_up must be whole seconds from 0 to {MAX_CATCH_UP} "
                              f"(7 days), not {catch_up!r}")
    new_job(worker, args, **dict(options))  # every job option checked as new() checks it


def parse_crontab(crontab: Any) -> list[dict[str, Any]]:
    """Validate ``DJANGO_JOBS["CRONTAB"]``; return one dict per entry.

    Each entry is ``(expression, worker_path)`` or ``(expression, worker_path, options)``
    with options ``args``, ``timezone``, ``name``, ``catch_up`` and the job options
    ``queue``, ``priority``, ``max_attempts``, ``tags``, ``meta``. The name defaults to the
    worker path; two entries of one worker need names. Raises ConfigurationError naming the
    entry.
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
        if len(item) == 3 and not isinstance(item[2], Mapping):
            raise ConfigurationError(f"{where}: options must be a dict, not {item[2]!r}")
        options = dict(item[2]) if len(item) == 3 else {}
        args = options.pop("args", {})
        tz = options.pop("timezone", "UTC")
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
                        "worker": worker, "args": args, "options": options, "timezone": tz,
                        "catch_up": catch_up})
    return entries


class Cron(Plugin):
    """Inserts the jobs of due cron entries; runs on the leader every second."""

    name = "cron"
    interval = 1.0

    def __init__(self, crontab: Sequence | None = None) -> None:
        self.crontab = parse_crontab(crontab or [])
        self._synced = False
        self._marker_renewed: datetime.datetime | None = None

    def run(self, engine, now: datetime.datetime) -> dict[str, Any]:
        from ..models import CronEntry

        if not self._synced:
            self.sync(engine)
            self._synced = True
        jobs, advanced = [], []
        entries = CronEntry.objects.using(engine.alias)
        for entry, slots in entries.due(now, GRACE):
            try:
                jobs += [self.job_for(entry, slot) for slot in slots]
            except Exception as exc:  # e.g. its worker was removed: skip it, run the others
                logger.error("cron entry %r skipped: %s", entry.name, exc)
                continue
            advanced.append((entry, slots[-1]))
        # The reboot marker and the jobs go in one transaction: if the insert fails, the
        # marker is not renewed either and the next run (or leader) tries the reboot again.
        with transaction.atomic(using=engine.alias):
            jobs += self.reboot_jobs(engine, now)
            inserted = 0
            if jobs:
                from ..insertion import insert_all

                inserted = sum(1 for job in insert_all(jobs, using=engine.alias)
                               if not job.conflict)
            for entry, last in advanced:
                entries.filter(pk=entry.pk).update(last_slot_at=last)
        return {"inserted": inserted}

    def job_for(self, entry, slot: datetime.datetime | str):
        """The job of ``entry`` for run time ``slot`` (or a reboot id), unique per slot."""
        options = entry.job_options()
        key = slot if isinstance(slot, str) else slot.isoformat()
        meta = {**options.pop("meta", {}), "cron": True, "cron_expr": entry.expression,
                "cron_tz": entry.timezone, "cron_name": entry.name, "cron_slot": key}
        extra = {} if isinstance(slot, str) else {"scheduled_at": slot}
        return new_job(entry.worker, entry.args, meta=meta, **options, **extra,
                       unique={"period": "infinity", "fields": ["meta"],
                               "keys": ["cron_name", "cron_slot"], "states": "all"})

    def sync(self, engine) -> None:
        """Mirror the settings entries into the cron table (keeping each row's ``paused``)."""
        from ..models import CronEntry, CronSource

        rows = CronEntry.objects.using(engine.alias)
        for spec in self.crontab:
            fields = {k: spec[k] for k in ("expression", "worker", "args", "options",
                                           "timezone", "catch_up")}
            # Insert-or-nothing first: two leaders for a moment may sync at once.
            rows.bulk_create([CronEntry(name=spec["name"], source=CronSource.SETTINGS,
                                        **fields)], ignore_conflicts=True)
            existing = rows.filter(name=spec["name"]).first()
            if existing is None:
                continue
            if existing.source == CronSource.SETTINGS:
                rows.filter(pk=existing.pk).update(**fields)
            else:
                logger.warning("cron entry %r in CRONTAB is shadowed by a database entry of "
                               "the same name", spec["name"])
        rows.filter(source=CronSource.SETTINGS).exclude(
            name__in=[spec["name"] for spec in self.crontab]).delete()

    def reboot_jobs(self, engine, now: datetime.datetime) -> list:
        """Jobs of ``@reboot`` entries when this run finds the cluster freshly started."""
        from ..models import CronEntry

        if (self._marker_renewed is not None
                and now - self._marker_renewed < CLUSTER_TTL / MARKER_RENEWALS_PER_TTL):
            return []
        boot = self.renew_cluster_marker(engine, now)
        self._marker_renewed = now
        if boot is None:
            return []
        jobs = []
        for entry in CronEntry.objects.using(engine.alias).active():
            try:
                if entry.expression_obj.reboot:
                    jobs.append(self.job_for(entry, f"reboot:{boot}"))
            except Exception as exc:
                logger.error("cron entry %r skipped: %s", entry.name, exc)
        return jobs

    def renew_cluster_marker(self, engine, now: datetime.datetime) -> str | None:
        """Extend the cluster marker; return a new boot id when the cluster (re)started."""
        expires = engine.adapt_datetime(now + CLUSTER_TTL)
        now_param = engine.adapt_datetime(now)
        boot = uuid.uuid4().hex
        with connections[engine.alias].cursor() as cursor:
            # Renew a live marker; replace (with a new boot id) a missing or expired one.
            cursor.execute("""
                INSERT INTO django_jobs_peer (name, node, started_at, expires_at)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    node = CASE WHEN django_jobs_peer.expires_at < %s THEN excluded.node
                                ELSE django_jobs_peer.node END,
                    started_at = CASE WHEN django_jobs_peer.expires_at < %s
                                      THEN excluded.started_at
                                      ELSE django_jobs_peer.started_at END,
                    expires_at = excluded.expires_at
                RETURNING node
            """, [CLUSTER_MARKER, boot, now_param, expires, now_param, now_param])
            row = cursor.fetchone()
        return boot if row and row[0] == boot else None


def next_runs(now: datetime.datetime | None = None) -> list[tuple[Any, Any]]:
    """(entry, next run) for every cron entry, for listings."""
    from ..models import CronEntry

    now = now or timezone.now()
    rows = []
    for entry in CronEntry.objects.all():
        try:
            rows.append((entry, entry.next_run(now)))
        except Exception:
            rows.append((entry, "invalid"))
    return rows
