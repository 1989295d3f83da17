"""Cron entries: the periodic jobs the leader inserts, from settings and managed at run time.

The verbs of the data live on the queryset: which entries are ``due`` and their slots,
``sync_settings`` (mirror ``CRONTAB`` into the table), ``advance`` (remember the last slot
inserted), and :meth:`CronEntry.job_spec`, the job a slot gets, unique per (entry, slot) in
every state for ever: offered any number of times, by any number of leaders, a slot is inserted
once. The cron plugin (:mod:`django_jobs.plugins.cron`), a receiver of ``leader_tick``, calls
them and inserts the jobs.
"""

from __future__ import annotations

import datetime
import difflib
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone as dj_timezone

from ..conf import jobs_settings
from ..crontab import CronError, parse, timezone_named
from ..jsonutil import round_trip

logger = logging.getLogger("django_jobs.cron")

#: Options of a CRONTAB entry besides the job options it passes on.
ENTRY_OPTIONS = ("args", "timezone", "name", "catch_up")
#: Job options a cron entry may set (scheduling and uniqueness belong to cron).
CRON_JOB_OPTIONS = ("queue", "priority", "max_attempts", "tags", "meta")
#: The longest catch-up window (7 days), in seconds.
MAX_CATCH_UP = 7 * 86400
#: Column sizes of the cron table.
EXPRESSION_MAX_LENGTH = 128
NAME_MAX_LENGTH = 128
#: Further checks of an entry that :meth:`CronEntry.clean` runs, added by the layers that know
#: workers and jobs (the cron plugin adds one that builds the entry's job): callables taking the
#: entry and raising on what is wrong.
entry_validators: list[Callable[[CronEntry], None]] = []

#: What makes each slot's job unique: its entry and slot, in every state, for ever.
SLOT_UNIQUE = {"period": math.inf, "fields": ["meta"], "keys": ["cron_name", "cron_slot"],
               "states": "all"}


def check_entry_fields(expression: Any, args: Any, options: Any, tz: Any,
                       catch_up: Any) -> None:
    """Raise ``CronError`` naming what is wrong with an entry's expression, args, option
    names, time zone or catch-up window (the worker and the job options' values are checked by
    :func:`django_jobs.plugins.cron.validate_entry`, which builds a job)."""
    if isinstance(expression, str) and len(expression) > EXPRESSION_MAX_LENGTH:
        raise CronError(f"cron expression is {len(expression)} characters long; the "
                        f"limit is {EXPRESSION_MAX_LENGTH}")
    parse(expression)
    if not isinstance(args, Mapping):
        raise CronError(f"cron args must be a dict, not {args!r}")
    round_trip(dict(args), "cron args")
    if not isinstance(options, Mapping):
        raise CronError(f"cron options must be a dict, not {options!r}")
    for name in options:
        if name not in CRON_JOB_OPTIONS:
            close = difflib.get_close_matches(name, [*CRON_JOB_OPTIONS, *ENTRY_OPTIONS], n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise CronError(f"unknown cron option {name!r}{hint} (valid: "
                            f"{', '.join([*ENTRY_OPTIONS, *CRON_JOB_OPTIONS])})")
    if tz not in (None, ""):  # none: the entry follows DJANGO_JOBS["CRON_TIMEZONE"]
        timezone_named(tz)
    if isinstance(catch_up, bool) or not isinstance(catch_up, int) or not \
            0 <= catch_up <= MAX_CATCH_UP:
        raise CronError(f"catch_up must be whole seconds from 0 to {MAX_CATCH_UP} "
                        f"(7 days), not {catch_up!r}")


class CronSource(models.TextChoices):
    SETTINGS = "settings", "Settings (DJANGO_JOBS['CRONTAB'])"
    DATABASE = "database", "Database (admin, manage.py jobs cron)"


class CronEntryQuerySet(models.QuerySet):
    def active(self) -> CronEntryQuerySet:
        return self.filter(paused=False)

    def due(self, now: datetime.datetime, grace: float) -> Iterator[tuple[CronEntry,
                                                                         list[datetime.datetime]]]:
        """Yield ``(entry, slots)`` for active entries with slots to insert by ``now``.

        The slots of an entry are its run times after the later of its last inserted slot,
        its creation, and ``now`` minus its window (``catch_up`` seconds, at least ``grace``):
        slots missed for longer than that are skipped. Oldest first, at most 1,000 per entry
        and call (the next call goes on from the last one). An entry that cannot be read (its
        expression or time zone no longer valid) is logged and skipped, never stopping others.
        """
        for entry in self.active():
            try:
                if entry.expression_obj.reboot:
                    continue
                window = datetime.timedelta(seconds=max(entry.catch_up, grace))
                since = max(entry.last_slot_at or entry.created_at, entry.created_at,
                            now - window)
                slots = entry.expression_obj.runs_between(since, now, entry.tzinfo)[:1000]
            except Exception as exc:
                logger.error("cron entry %r skipped: %s", entry.name, exc)
                continue
            if slots:
                yield entry, slots

    def advance(self, entry: CronEntry, last_slot: datetime.datetime) -> None:
        """Remember that ``entry``'s jobs are inserted up to ``last_slot``."""
        self.filter(pk=entry.pk).update(last_slot_at=last_slot)

    def sync_settings(self, specs: Iterable[Mapping[str, Any]]) -> None:
        """Mirror the entries of ``DJANGO_JOBS["CRONTAB"]`` (as ``parse_crontab`` returns
        them) into the table: insert new ones, update changed ones (keeping each row's
        ``paused``), delete settings rows no longer listed. A database entry of the same name
        wins over a settings one (logged)."""
        specs = list(specs)
        for spec in specs:
            fields = {k: spec[k] for k in ("expression", "worker", "args", "options",
                                           "timezone", "catch_up")}
            # Insert-or-nothing first: two leaders for a moment may sync at once.
            self.bulk_create([CronEntry(name=spec["name"], source=CronSource.SETTINGS,
                                        **fields)], ignore_conflicts=True)
            existing = self.filter(name=spec["name"]).first()
            if existing is None:
                continue
            if existing.source == CronSource.SETTINGS:
                self.filter(pk=existing.pk).update(**fields)
            else:
                logger.warning("cron entry %r in CRONTAB is shadowed by a database entry of "
                               "the same name", spec["name"])
        self.filter(source=CronSource.SETTINGS).exclude(
            name__in=[spec["name"] for spec in specs]).delete()

    def rebooting(self) -> Iterator[CronEntry]:
        """Active ``@reboot`` entries (an unreadable entry is logged and skipped)."""
        for entry in self.active():
            try:
                if entry.expression_obj.reboot:
                    yield entry
            except Exception as exc:
                logger.error("cron entry %r skipped: %s", entry.name, exc)


class CronEntry(models.Model):
    """One periodic job: insert a job of ``worker`` with ``args`` at each run of
    ``expression`` in ``timezone``.

    Rows with ``source = settings`` mirror ``DJANGO_JOBS["CRONTAB"]`` (the leader writes them;
    only ``paused`` is yours to change); rows with ``source = database`` are managed in the
    admin or with ``manage.py jobs cron``.
    """

    name = models.CharField(max_length=128, unique=True)
    expression = models.CharField(max_length=128,
                                  help_text="Five fields or a nickname, e.g. '*/15 * * * *', "
                                            "'0 9 * * MON-FRI', '@daily', '@reboot'.")
    worker = models.CharField(max_length=255, help_text="Dotted path of the worker class.")
    args = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True,
                               help_text="Job options: queue, priority, max_attempts, tags, "
                                         "meta.")
    timezone = models.CharField(max_length=64, default="", blank=True,
                                help_text="IANA time zone the expression is read in; blank: "
                                          "DJANGO_JOBS['CRON_TIMEZONE'] (UTC by default).")
    catch_up = models.PositiveIntegerField(
        default=0, help_text="Seconds of missed runs to insert after downtime (0: none; at "
                             "most 7 days).")
    paused = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=CronSource.choices,
                              default=CronSource.DATABASE, editable=False)
    last_slot_at = models.DateTimeField(null=True, blank=True, editable=False,
                                        help_text="The last run time a job was inserted for.")
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CronEntryQuerySet.as_manager()

    class Meta:
        db_table = "django_jobs_cron"
        ordering = ["name"]
        verbose_name = "cron entry"
        verbose_name_plural = "cron entries"
        constraints = [
            models.CheckConstraint(condition=models.Q(catch_up__lte=7 * 86400),
                                   name="django_jobs_cron_catch_up_range"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.expression} {self.worker}"

    @property
    def expression_obj(self):
        return parse(self.expression)

    @property
    def timezone_name(self) -> str:
        """The zone the expression is read in: the entry's own, else ``CRON_TIMEZONE``."""
        return self.timezone or jobs_settings.CRON_TIMEZONE

    @property
    def tzinfo(self):
        return timezone_named(self.timezone_name)

    def next_run(self, after: datetime.datetime | None = None) -> datetime.datetime | None:
        """The next run time (UTC) after ``after`` (default now); None for @reboot."""
        return self.expression_obj.next_run(after or dj_timezone.now(), self.tzinfo)

    def clean(self) -> None:
        """Validate the expression, time zone, args, option names and catch-up window, then
        run :data:`entry_validators` (the worker and the job options, by building a job)."""
        try:
            check_entry_fields(self.expression, self.args, self.options, self.timezone,
                               self.catch_up)
            for validate in entry_validators:
                validate(self)
        except ValidationError:
            raise
        except Exception as exc:  # every validation error names its problem
            raise ValidationError(str(exc)) from None

    def job_options(self) -> dict[str, Any]:
        return dict(self.options or {})

    def job_spec(self, slot: datetime.datetime | str) -> tuple[str, dict, dict[str, Any]]:
        """``(worker, args, options)`` of the job for run time ``slot`` (or a reboot id):
        ``meta`` names the entry and slot, and ``unique`` makes the job unique per (entry,
        slot) for ever, so a slot offered twice is inserted once."""
        options = self.job_options()
        key = slot if isinstance(slot, str) else slot.isoformat()
        options["meta"] = {**options.get("meta", {}), "cron": True,
                           "cron_expr": self.expression, "cron_tz": self.timezone_name,
                           "cron_name": self.name, "cron_slot": key}
        if not isinstance(slot, str):
            options["scheduled_at"] = slot
        options["unique"] = SLOT_UNIQUE
        return self.worker, dict(self.args or {}), options
