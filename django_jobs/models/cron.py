"""Cron entries: the periodic jobs the leader inserts, from settings and managed at run time."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone as dj_timezone

logger = logging.getLogger("django_jobs.cron")


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
    timezone = models.CharField(max_length=64, default="UTC",
                                help_text="IANA time zone the expression is read in.")
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
        from ..crontab import parse

        return parse(self.expression)

    @property
    def tzinfo(self):
        from ..crontab import timezone_named

        return timezone_named(self.timezone)

    def next_run(self, after: datetime.datetime | None = None) -> datetime.datetime | None:
        """The next run time (UTC) after ``after`` (default now); None for @reboot."""
        return self.expression_obj.next_run(after or dj_timezone.now(), self.tzinfo)

    def clean(self) -> None:
        """Validate the expression, worker, time zone, args and options (admin forms)."""
        from ..plugins.cron import validate_entry

        try:
            validate_entry(self.expression, self.worker, self.args, self.options,
                           self.timezone, self.catch_up)
        except ValidationError:
            raise
        except Exception as exc:  # every validation error names its problem
            raise ValidationError(str(exc)) from None

    def job_options(self) -> dict[str, Any]:
        return dict(self.options or {})
