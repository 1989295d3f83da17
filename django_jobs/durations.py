"""Durations as users write them: seconds, ``timedelta``, or ``(n, "minutes")``."""

from __future__ import annotations

import datetime
import math

from .exceptions import InvalidJobError

Duration = int | float | datetime.timedelta | tuple[int | float, str]

UNITS = {
    "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400,
}


def _float(number: int | float) -> float:
    """``float(number)``; an integer too large for a float is infinite (refused by callers)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def to_seconds(value: Duration, name: str, *, allow_infinity: bool = False) -> float:
    """Return ``value`` in seconds, or raise :class:`InvalidJobError` naming option ``name``.

    Accepts a non-negative number of seconds, a ``timedelta``, or a pair ``(n, unit)`` with a unit
    of second(s), minute(s), hour(s), day(s) or week(s). With ``allow_infinity``, ``None``,
    ``math.inf`` and ``"infinity"`` mean forever and return ``math.inf``.
    """
    if allow_infinity and (value is None or value == "infinity" or value == math.inf):
        return math.inf
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _float(value)
    elif (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)
          and isinstance(value[0], (int, float)) and not isinstance(value[0], bool)):
        amount, unit = value
        factor = UNITS.get(unit.rstrip("s"))
        if factor is None:
            raise InvalidJobError(
                f"{name}: unknown unit {unit!r}; use one of {', '.join(u + 's' for u in UNITS)}")
        seconds = _float(amount) * factor
    else:
        forms = "seconds, a timedelta or (n, 'minutes')"
        if allow_infinity:
            forms += " or 'infinity'"
        raise InvalidJobError(f"{name} must be {forms}, not {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidJobError(f"{name} must be a finite duration of 0 or more, not {value!r}")
    return seconds
