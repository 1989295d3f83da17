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
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .exceptions import InvalidJobError

UTC = datetime.UTC

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
#: How far ahead next_run looks before deciding an expression never matches (Feb 30th).
HORIZON = datetime.timedelta(days=366 * 8)


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
        expression never matches (``0 0 30 2 *``) or is ``@reboot``."""
        if self.reboot:
            return None
        tz = tz or UTC
        start = after.astimezone(tz)
        wall = start.replace(tzinfo=None, second=0, microsecond=0, fold=0)
        wall += datetime.timedelta(minutes=1)
        limit = wall + HORIZON
        while wall < limit:
            if wall.month not in self.months:
                wall = _first_of_next_month(wall)
            elif not self._day_matches(wall):
                wall = (wall + datetime.timedelta(days=1)).replace(hour=0, minute=0)
            elif wall.hour not in self.hours:
                wall = (wall + datetime.timedelta(hours=1)).replace(minute=0)
            elif wall.minute not in self.minutes:
                wall += datetime.timedelta(minutes=1)
            else:
                instant = to_utc(wall, tz)
                if instant is not None and instant > after:
                    return instant
                wall += datetime.timedelta(minutes=1)
        return None

    def runs_between(self, after: datetime.datetime, until: datetime.datetime,
                     tz: ZoneInfo | None = None) -> list[datetime.datetime]:
        """Every run time in ``(after, until]``, in UTC, oldest first."""
        runs = []
        current = after
        while True:
            nxt = self.next_run(current, tz)
            if nxt is None or nxt > until:
                return runs
            runs.append(nxt)
            current = nxt


def _first_of_next_month(wall: datetime.datetime) -> datetime.datetime:
    year, month = (wall.year + 1, 1) if wall.month == 12 else (wall.year, wall.month + 1)
    return wall.replace(year=year, month=month, day=1, hour=0, minute=0)


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
            if not step_text.isdigit() or int(step_text) < 1:
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


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
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
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as "
                        f"'Europe/Paris'") from None
