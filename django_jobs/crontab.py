"""Cron expressions: parsing, matching and the next run time in a time zone.

Five fields, ``minute hour day-of-month month day-of-week``, each ``*``, a value, a range
``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from ``a`` to the end of the field), or a list
of those separated by commas. Months may be written JAN-DEC and weekdays SUN-SAT (any case).
Weekdays run 0-6 from Sunday; 7 is accepted as Sunday too, so ``MON-SUN`` and ``5-7`` work.

All five fields must match, the day-of-month and day-of-week ones included: ``0 0 13 * FRI``
runs on Fridays the 13th only. This is Oban's rule; classic Vixie cron instead runs when either
day field matches if both are restricted.

Nicknames: ``@yearly``/``@annually`` (``0 0 1 1 *``), ``@monthly`` (``0 0 1 * *``),
``@weekly`` (``0 0 * * 0``), ``@daily``/``@midnight`` (``0 0 * * *``), ``@hourly``
(``0 * * * *``), and ``@reboot``, which has no time: it runs once when the cluster starts.

Time zones: an expression is matched against the wall clock of its time zone, once per
matching minute. A wall-clock minute that does not exist (skipped when clocks go forward) does
not run; one that happens twice (when clocks go back) runs the first time only.

Rare and impossible expressions: ``next_run`` finds the next run however far away it is
(``0 0 29 2 MON``, a Monday the 29th of February, runs in 2044, then 2072). The Gregorian
calendar repeats every 400 years (146,097 days, a whole number of weeks), so ``next_run`` looks
that far ahead (``HORIZON``) and no further: an expression with no run in 400 years has none.
It walks only the dates whose month, day of month and weekday match, and within those the
matching hours and minutes, so a rare expression costs a few steps a year, not one a minute.

- A month and a day that never go together (``0 0 30 2 *``, ``0 0 31 4,6,9,11 *``) never run,
  decided from the fields alone. They are the only expressions the calendar rules out: every
  date that exists, February 29th included, falls on each weekday within the 400 years.
- In a zone with daylight saving time, a matching date whose matching minutes all fall in the
  gap of a spring-forward change has no run; the search goes on to the next matching date.
  An expression can so never run (``30 2 25-31 3 SUN`` in Europe/Paris: 02:30 on the last
  Sunday of March): after 400 years of such dates ``next_run`` answers None. That is exact
  while the zone keeps its yearly rule, which repeats with the calendar; a run brought back
  only by a future change of the zone's rules is not looked for.
"""

from __future__ import annotations

import calendar
import datetime
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .exceptions import InvalidJobError

UTC = datetime.UTC
MINUTE = datetime.timedelta(minutes=1)

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)
MONTHS = {name: number for number, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}
WEEKDAYS = {name: number for number, name in enumerate(
    ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
REBOOT = "@reboot"
#: How far ahead next_run looks before deciding an expression never runs: 400 Gregorian
#: years, after which dates and weekdays repeat (146,097 days is a whole number of weeks).
HORIZON = datetime.timedelta(days=146_097)
#: The most days each month can have (February 29th in leap years).
LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30,
                 12: 31}


class CronError(InvalidJobError):
    """A cron expression that cannot be parsed; the message names the field and its range."""


@dataclass(frozen=True)
class Expression:
    """A parsed expression: the allowed values of each field (``reboot`` has none)."""

    text: str
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    reboot: bool = False

    def matches(self, wall: datetime.datetime) -> bool:
        """Whether the wall-clock minute ``wall`` (naive or aware, read as is) matches."""
        if self.reboot:
            return False
        return (wall.minute in self.minutes and wall.hour in self.hours
                and wall.month in self.months and self._day_matches(wall))

    def _day_matches(self, wall: datetime.datetime) -> bool:
        # isoweekday: Monday 1 .. Sunday 7; cron: Sunday 0 .. Saturday 6.
        return wall.day in self.days and wall.isoweekday() % 7 in self.weekdays

    def next_run(self, after: datetime.datetime, tz: ZoneInfo | None = None
                 ) -> datetime.datetime | None:
        """The first matching minute strictly after ``after`` (aware), in UTC; None if the
        expression never runs (``0 0 30 2 *``, or no run within ``HORIZON``) or is
        ``@reboot``."""
        return self._first_run(after, tz or UTC, None)

    def runs_between(self, after: datetime.datetime, until: datetime.datetime,
                     tz: ZoneInfo | None = None) -> list[datetime.datetime]:
        """Every run time in ``(after, until]``, in UTC, oldest first."""
        tz = tz or UTC
        # A wall-clock date two days past until's holds no run up to until (clocks never move
        # by more than a day), so the search stops there however rare the expression.
        last = _later(until.astimezone(tz).date(), datetime.timedelta(days=2))
        runs = []
        current = after
        while (nxt := self._first_run(current, tz, last)) is not None and nxt <= until:
            runs.append(nxt)
            current = nxt
        return runs

    def _first_run(self, after: datetime.datetime, tz: ZoneInfo,
                   last: datetime.date | None) -> datetime.datetime | None:
        """next_run, looking at wall-clock dates up to ``last`` (None: ``HORIZON`` ahead).

        Wall-clock minutes are tried in order from the one after ``after``'s, on matching dates
        only. A minute skipped by a spring-forward change has no instant: the search goes on
        after the gap. A minute whose first occurrence is not after ``after`` (``after`` in the
        second pass of an hour repeated when clocks went back) has already run."""
        if self.reboot or not self.fits_the_calendar:
            return None
        start = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        resume = start  # minutes before this one are known to be in a gap
        for date in self._dates(start.date(), last):
            for wall in self._minutes(date, start):
                if wall < resume:
                    continue
                try:
                    instant = to_utc(wall, tz)
                except OverflowError:  # past the last instant Python has: no run
                    return None
                if instant is None:
                    resume = _after_gap(wall, tz)
                elif instant > after:
                    return instant
        return None

    @functools.cached_property
    def fits_the_calendar(self) -> bool:
        """Whether some allowed month has some allowed day: ``0 0 30 2 *`` does not. The
        weekdays need no check: every date that exists (February 29th too) falls on each
        weekday within 400 years, so this alone tells whether the calendar allows a run."""
        if self.reboot:
            return False
        return min(self.days) <= max(LONGEST_MONTH[month] for month in self.months)

    @functools.cached_property
    def _sorted(self) -> tuple[tuple[int, ...], ...]:
        # The fields in increasing order, once per expression (parse() caches expressions).
        return (tuple(sorted(self.minutes)), tuple(sorted(self.hours)),
                tuple(sorted(self.days)), tuple(sorted(self.months)))

    def _dates(self, first: datetime.date, last: datetime.date | None
               ) -> Iterator[datetime.date]:
        """The dates from ``first`` to ``last`` (None: ``HORIZON`` after ``first``, or the last
        date Python has) whose month, day of month and weekday match, in order.

        Only the allowed months of each year and the allowed days of each month are looked at,
        so ``0 0 29 2 MON`` costs one date a leap year and nothing in the others."""
        _, _, days, months = self._sorted
        if last is None:
            last = _later(first, HORIZON)
        for year in range(first.year, last.year + 1):
            for month in months:
                if (year, month) < (first.year, first.month):
                    continue
                length = calendar.monthrange(year, month)[1]
                for day in days:
                    if day > length:
                        break  # the days are sorted: none of the rest fits this month
                    date = datetime.date(year, month, day)
                    if date > last:
                        return
                    # isoweekday: Monday 1 .. Sunday 7; cron: Sunday 0 .. Saturday 6.
                    if date >= first and date.isoweekday() % 7 in self.weekdays:
                        yield date

    def _minutes(self, date: datetime.date, start: datetime.datetime
                 ) -> Iterator[datetime.datetime]:
        """The matching wall-clock minutes of ``date``, in order; on ``start``'s own date,
        only those after ``start``."""
        minutes, hours, _, _ = self._sorted
        earliest = (start.hour, start.minute) if date == start.date() else (-1, -1)
        for hour in hours:
            if hour < earliest[0]:
                continue
            for minute in minutes:
                if (hour, minute) > earliest:
                    yield datetime.datetime(date.year, date.month, date.day, hour, minute)


def _later(date: datetime.date, delta: datetime.timedelta) -> datetime.date:
    """``date + delta``, or the last date Python has if that is beyond it."""
    try:
        return date + delta
    except OverflowError:
        return datetime.date.max


def _after_gap(wall: datetime.datetime, tz: ZoneInfo) -> datetime.datetime:
    """For a wall-clock minute in the gap of a spring-forward change, a minute no later than
    the first one that exists after the gap: the minutes in between need no to_utc() call."""
    # Read with the offset of after the change (fold=1), ``wall`` is an instant before the
    # change; with the offset of before it (fold=0), one after it. Bisect to the minute.
    early = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    late = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    offset = early.astimezone(tz).utcoffset()
    while late - early > MINUTE:
        middle = early + (late - early) / 2
        if middle.astimezone(tz).utcoffset() == offset:
            early = middle
        else:
            late = middle
    # ``late`` is less than a minute past the change, so its wall time floored to the minute
    # is at most the first whole minute after the gap.
    return late.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)


def to_utc(wall: datetime.datetime, tz: ZoneInfo) -> datetime.datetime | None:
    """The UTC instant of the wall-clock minute ``wall`` in ``tz``: its first occurrence when
    clocks went back, None when clocks skipped it."""
    local = wall.replace(tzinfo=tz, fold=0)
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        return None  # in the gap of a spring-forward change
    return instant


def parse(text: str) -> Expression:
    """Parse a five-field expression or a nickname; raise :class:`CronError`."""
    if not isinstance(text, str):
        raise CronError(f"a cron expression must be a string, not {text!r}")
    return _parse(text)


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> Expression:
    source = " ".join(text.split())
    lowered = source.lower()
    if lowered == REBOOT:
        return Expression(text=source, reboot=True)
    if lowered.startswith("@"):
        if lowered not in NICKNAMES:
            raise CronError(f"unknown cron nickname {source!r}; use one of "
                            f"{', '.join([*NICKNAMES, REBOOT])}")
        return _fields(source, NICKNAMES[lowered])
    return _fields(source, source)


def _fields(text: str, spec: str) -> Expression:
    parts = spec.split(" ")
    if len(parts) != 5:
        raise CronError(f"cron expression {text!r} has {len(parts)} fields; it needs 5: "
                        f"minute hour day-of-month month day-of-week")
    values = [_field(part, *field) for part, field in zip(parts, FIELDS, strict=True)]
    return Expression(text=text, minutes=values[0], hours=values[1], days=values[2],
                      months=values[3], weekdays=values[4])


def _field(part: str, name: str, low: int, high: int) -> frozenset[int]:
    names = MONTHS if name == "month" else WEEKDAYS if name == "day-of-week" else {}
    top = 7 if name == "day-of-week" else high  # 7 is Sunday too
    values: set[int] = set()
    for item in part.split(","):
        if not item:
            raise CronError(f"{name} field {part!r} has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _digits(step_text) or int(step_text) < 1:
                raise CronError(f"{name} field step {step_text!r} must be a whole number of "
                                f"at least 1")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = _value(first_text, name, low, top, names)
            last = _value(last_text, name, low, top, names)
            if name == "day-of-week" and last == 0 and first > 0 and last_text.upper() == "SUN":
                last = 7  # "MON-SUN": Sunday as the end of a range (but SUN-SUN is Sunday)
            if first > last:
                raise CronError(f"{name} field range {base!r} runs backwards ({first} > {last})")
        else:
            first = _value(base, name, low, top, names)
            last = top if slash else first  # "a/n": from a to the end of the field
        values.update(range(first, last + 1, step))
    if name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is also true of "²" and "٣", which int() refuses
    or reads as another number."""
    return text.isascii() and text.isdigit()


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not _digits(text):
        hint = f" or a name ({', '.join(names)})" if names else ""
        raise CronError(f"{name} field value {text!r} is not a number{hint}")
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{name} field {number} is out of range {low}..{high}")
    return number


def timezone_named(name: str | None) -> ZoneInfo:
    """The zoneinfo time zone ``name`` (UTC for None), or CronError naming it."""
    if name is None:
        return ZoneInfo("UTC")
    if not isinstance(name, str):
        raise CronError(f"a time zone is a name such as 'Europe/Paris', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as "
                        f"'Europe/Paris'") from None
