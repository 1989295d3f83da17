"""Property-based tests of the cron parser and the next-run computation (hypothesis).

Expressions are generated from random field specs (``*``, values, ranges, steps ``*/n``,
``a-b/n`` and ``a/n``, lists, month and weekday names in any case) together with a model of
the values each spec allows. The parser must produce exactly the model's sets, and
``next_run`` / ``runs_between`` must agree with a brute-force search that walks UTC minutes one
by one after the start: a minute is a run when its wall-clock time in the entry's zone matches
the model and it is the first occurrence of that wall time (``fold == 0``). Walking UTC minutes
never produces a wall time that does not exist (the gap of a spring-forward change), so the
brute force needs no rule for those.

Start instants are drawn around the DST changes of Europe/Paris, America/New_York and
Australia/Lord_Howe (whose clocks move by 30 minutes), and the brute force looks
``HORIZON`` ahead; ``next_run`` may only return something later than that when the brute
force found nothing within it. Rare expressions (February 29th on a Monday, the 31st of short
months) are checked against a day-by-day search instead: it walks wall-clock dates one at a
time for up to ``FAR_DAYS`` and, on a matching date, that date's UTC minutes one at a time.

Every test's cost is bounded whatever hypothesis draws: each brute force stops after a fixed
number of steps, failure messages name the first difference instead of diffing thousands of
run times (unittest's list diff is quadratic, and shrinking calls it hundreds of times), and
``ci()`` settings fix the number of examples, a deadline per example, no example database and
derandomized draws, so every run tests the same examples. Set ``CRON_PROPERTIES_EXPLORE=1``
to draw new (and ten times as many) examples instead.
"""

import calendar
import datetime
import functools
import itertools
import os
from zoneinfo import ZoneInfo

from django.test import SimpleTestCase
from hypothesis import Phase, example, given, settings, strategies as st

from django_jobs.crontab import CronError, parse

UTC = datetime.UTC
MINUTE = datetime.timedelta(minutes=1)
HORIZON = datetime.timedelta(days=2)
ZONES = ("Europe/Paris", "America/New_York", "Australia/Lord_Howe")
#: How many wall-clock dates the day-by-day search walks (50 years: every expression the
#: calendar allows runs within 40, February 29th on a given weekday being the rarest), and on
#: how many matching dates it walks the minutes (more only in a spring-forward gap).
FAR_DAYS = 366 * 50
FAR_MATCHING_DAYS = 3

EXPLORE = bool(os.environ.get("CRON_PROPERTIES_EXPLORE"))


def ci(max_examples: int) -> settings:
    """Settings for CI: a fixed number of examples, drawn the same way on every run
    (``derandomize`` implies no example database, so no stored failure is replayed first),
    a deadline per example far above the few milliseconds each costs (a next_run that
    stepped minute by minute through years would miss it), and no explain phase, which
    re-runs a failing test many more times."""
    return settings(max_examples=max_examples * (10 if EXPLORE else 1),
                    deadline=datetime.timedelta(seconds=2), derandomize=not EXPLORE,
                    database=None, phases=(Phase.explicit, Phase.generate, Phase.shrink))

MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
               "DEC"]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@functools.cache
def transitions(zone: str) -> tuple[datetime.datetime, ...]:
    """The UTC instants (to the minute) at which ``zone``'s offset changes, 2024-2026."""
    tz = ZoneInfo(zone)
    found = []
    step = datetime.timedelta(hours=1)
    at = datetime.datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime.datetime(2027, 1, 1, tzinfo=UTC)
    offset = at.astimezone(tz).utcoffset()
    while at < end:
        nxt = at + step
        if nxt.astimezone(tz).utcoffset() != offset:
            low, high = at, nxt  # the change is in (low, high]: bisect to the minute
            while high - low > MINUTE:
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle.astimezone(tz).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            found.append(high)
            offset = nxt.astimezone(tz).utcoffset()
        at = nxt
    return tuple(found)


# -- field specs and their model ------------------------------------------------------------

class Field:
    def __init__(self, name, low, high, names=None, top=None):
        self.name, self.low, self.high = name, low, high
        self.names = names          # value -> name, for months and weekdays
        self.top = top or high      # the largest value accepted (7 for day-of-week)


MINUTE_F = Field("minute", 0, 59)
HOUR_F = Field("hour", 0, 23)
DAY_F = Field("day-of-month", 1, 31)
MONTH_F = Field("month", 1, 12, names=dict(enumerate(MONTH_NAMES, 1)))
WEEKDAY_F = Field("day-of-week", 0, 6, names=dict(enumerate(DAY_NAMES)), top=7)
FIELDS = (MINUTE_F, HOUR_F, DAY_F, MONTH_F, WEEKDAY_F)


@st.composite
def rendered(draw, field, value, *, range_end=False):
    """``value`` as text: a number, or (months, weekdays) its name in a random case."""
    names = field.names
    if names and draw(st.booleans()):
        if value in names:
            name = names[value]
        elif field is WEEKDAY_F and value == 7 and range_end:
            name = "SUN"  # Sunday at the end of a range counts as 7 ("MON-SUN")
        else:
            return str(value)
        return draw(st.sampled_from([name, name.lower(), name.capitalize()]))
    return str(value)


@st.composite
def item(draw, field):
    """One list item: (text, the set of values it allows, Sunday written as 7 folded in)."""
    low, top = field.low, field.top
    kind = draw(st.sampled_from(["star", "star_step", "value", "range", "range_step",
                                 "start_step"]))
    step = draw(st.integers(1, max(2, (field.high - low + 1) // 2 + 1)))
    if kind == "star":
        return "*", set(range(low, field.high + 1))
    if kind == "star_step":
        return f"*/{step}", set(range(low, field.high + 1, step))
    first = draw(st.integers(low, top))
    if kind == "value":
        return draw(rendered(field, first)), {first}
    if kind == "start_step":
        # "a/n": from a to the end of the field (for day-of-week the end is 7, Sunday).
        return f"{draw(rendered(field, first))}/{step}", set(range(first, top + 1, step))
    last = draw(st.integers(first, top))
    last_text = draw(rendered(field, last, range_end=True))
    if field is WEEKDAY_F and last_text.upper() == "SUN":
        # SUN ending a range is 7 ("MON-SUN" is the whole week), except after Sunday itself:
        # "SUN-SUN" and "0-SUN" are Sunday only.
        last = 7 if first > 0 else 0
    text = f"{draw(rendered(field, first))}-{last_text}"
    if kind == "range":
        return text, set(range(first, last + 1))
    return f"{text}/{step}", set(range(first, last + 1, step))


@st.composite
def field_spec(draw, field, common=()):
    """A field: ``*``, one of ``common`` (values near the start), or a list of items."""
    choice = draw(st.integers(0, 9))
    if choice < 3:
        return "*", set(range(field.low, field.high + 1))
    if choice < 5 and common:
        values = sorted(draw(st.sets(st.sampled_from(sorted(common)), min_size=1)))
        return ",".join(str(v) for v in values), set(values)
    items = draw(st.lists(item(field), min_size=1, max_size=3))
    values = set().union(*(v for _, v in items))
    if field is WEEKDAY_F and 7 in values:
        values = (values - {7}) | {0}
    return ",".join(text for text, _ in items), values


@st.composite
def start_instant(draw):
    """(zone, an instant within two days before to one day after a DST change there)."""
    zone = draw(st.sampled_from(ZONES))
    change = draw(st.sampled_from(transitions(zone)))
    offset = draw(st.integers(-2 * 24 * 60, 24 * 60))
    seconds = draw(st.sampled_from([0, 0, 1, 30, 59]))
    micro = draw(st.sampled_from([0, 0, 500_000]))
    start = change + datetime.timedelta(minutes=offset, seconds=seconds, microseconds=micro)
    return zone, start


@st.composite
def expression_and_start(draw):
    """An expression whose fields lean towards the hours and days around the start."""
    zone, start = draw(start_instant())
    tz = ZoneInfo(zone)
    walls = [(start + datetime.timedelta(hours=h)).astimezone(tz) for h in range(0, 49, 3)]
    specs = [
        draw(field_spec(MINUTE_F, {0, 15, 30, 45, start.minute})),
        draw(field_spec(HOUR_F, {w.hour for w in walls} | {0, 1, 2, 3})),
        draw(field_spec(DAY_F, {w.day for w in walls})),
        draw(field_spec(MONTH_F, {w.month for w in walls})),
        draw(field_spec(WEEKDAY_F, {w.isoweekday() % 7 for w in walls})),
    ]
    text = " ".join(t for t, _ in specs)
    return text, [v for _, v in specs], zone, start


def brute_force(sets, tz, after, until):
    """Every UTC minute in (after, until] whose first-occurrence wall time matches ``sets``."""
    minutes, hours, days, months, weekdays = sets
    runs = []
    at = after.replace(second=0, microsecond=0) + MINUTE
    while at <= until:
        local = at.astimezone(tz)
        if (local.fold == 0 and local.minute in minutes and local.hour in hours
                and local.day in days and local.month in months
                and local.isoweekday() % 7 in weekdays):
            runs.append(at)
        at += MINUTE
    return runs


@st.composite
def rare_field(draw, field, common):
    """Mostly some of ``common`` (the values that make an expression rare), else any spec."""
    if draw(st.integers(0, 9)) < 6:
        values = draw(st.sets(st.sampled_from(sorted(common)), min_size=1, max_size=2))
        return ",".join(str(v) for v in sorted(values)), values
    return draw(field_spec(field, common))


@st.composite
def rare_expression_and_start(draw):
    """An expression leaning towards dates that come rarely or never (the 29th to 31st of
    February and of 30-day months, on given weekdays), in UTC or a zone with DST, and a
    start anywhere from 1970 to 2300."""
    zone = draw(st.sampled_from(("UTC", *ZONES)))
    minutes = draw(st.integers(0, (2300 - 1970) * 365 * 24 * 60))
    seconds = draw(st.sampled_from([0, 0, 1, 30, 59]))
    start = (datetime.datetime(1970, 1, 1, tzinfo=UTC)
             + datetime.timedelta(minutes=minutes, seconds=seconds))
    specs = [
        draw(field_spec(MINUTE_F, {0, 30, 59})),
        draw(field_spec(HOUR_F, {0, 1, 2, 3, 23})),
        draw(rare_field(DAY_F, {13, 29, 30, 31})),
        draw(rare_field(MONTH_F, {2, 4, 6, 9, 11})),
        draw(rare_field(WEEKDAY_F, set(range(7)))),
    ]
    text = " ".join(t for t, _ in specs)
    return text, [v for _, v in specs], zone, start


def day_by_day(sets, tz, after):
    """The first run after ``after``, found by walking wall-clock dates in ``tz`` one at a
    time from after's own, and on a date whose month, day and weekday match, the UTC minutes
    around it one at a time (``brute_force``). Returns (run, None) when found, or (None, the
    first date not looked at) when ``FAR_DAYS`` dates or ``FAR_MATCHING_DAYS`` matching ones
    were walked without finding a run."""
    _, _, days, months, weekdays = sets
    first = after.astimezone(tz).date()
    matching = 0
    for offset in range(FAR_DAYS):
        date = first + datetime.timedelta(days=offset)
        if not (date.month in months and date.day in days
                and date.isoweekday() % 7 in weekdays):
            continue
        # The UTC minutes of this wall-clock date, with hours to spare on both sides (a run
        # found in them is on a neighbouring date; one on the date before would have been
        # found when that date was walked).
        midnight = datetime.datetime(date.year, date.month, date.day, tzinfo=tz)
        low = max(after, midnight.astimezone(UTC) - 3 * datetime.timedelta(hours=1))
        high = (midnight + datetime.timedelta(days=1)).astimezone(UTC) + datetime.timedelta(hours=3)
        runs = brute_force(sets, tz, low, high)
        if runs:
            return runs[0], None
        matching += 1
        if matching == FAR_MATCHING_DAYS:
            return None, date + datetime.timedelta(days=1)
    return None, first + datetime.timedelta(days=FAR_DAYS)


def calendar_allows(sets):
    """Whether some month of the model has some of its days in some year (the model's own
    check, by the calendar module, of the date combinations that can exist)."""
    _, _, days, months, _ = sets
    return any(day <= calendar.monthrange(2000, month)[1] for month in months for day in days)


def first_difference(got, expected):
    """Where two lists of run times part: unittest's own message for unequal lists diffs
    their whole printouts, which is quadratic and takes seconds for thousands of runs."""
    for index, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        if mine != theirs:
            return f"run {index}: got {mine}, expected {theirs}"
    return (f"{len(got)} runs, expected {len(expected)}; the first extra: "
            f"{(got or expected)[min(len(got), len(expected))]}")


def examples(*cases):
    """Hypothesis @example decorators for (text, zone, start) written by hand."""
    def decorate(test):
        for text, zone, start in cases:
            sets = [set(getattr(parse(text), a)) for a in
                    ("minutes", "hours", "days", "months", "weekdays")]
            test = example((text, sets, zone, start))(test)
        return test
    return decorate


def at(*args, **kwargs):
    return datetime.datetime(*args, **kwargs, tzinfo=UTC)


# Hand-written cases at the changes: Paris skips 02:00-03:00 on 2024-03-31 (01:00 UTC) and
# repeats 02:00-03:00 on 2024-10-27; New York skips 02:00-03:00 on 2024-03-10 and repeats
# 01:00-02:00 on 2024-11-03; Lord Howe repeats 01:30-02:00 on 2024-04-07 (15:00 UTC the day
# before) and skips 02:00-02:30 on 2024-10-06 (15:30 UTC the day before).
HAND_CASES = (
    ("30 2 * * *", "Europe/Paris", at(2024, 3, 30, 12)),
    ("30 2 * * *", "Europe/Paris", at(2024, 10, 26, 12)),
    ("*/20 2 * * *", "Europe/Paris", at(2024, 10, 27, 0, 30)),  # inside the first 02:xx
    ("*/20 2 * * *", "Europe/Paris", at(2024, 10, 27, 1, 10)),  # inside the second 02:xx
    ("0 * 27 OCT SUN", "Europe/Paris", at(2024, 10, 26, 23)),
    ("15 1 * * *", "America/New_York", at(2024, 11, 3, 5, 20)),
    ("59 1,2 * * *", "America/New_York", at(2024, 3, 10, 6)),
    ("45 1 * * *", "Australia/Lord_Howe", at(2024, 4, 6, 14)),
    ("45 1 * * *", "Australia/Lord_Howe", at(2024, 4, 6, 14, 50)),  # after the first 01:45
    ("15,45 2 * * *", "Australia/Lord_Howe", at(2024, 10, 5, 15)),
    ("* 2 6 10 *", "Australia/Lord_Howe", at(2024, 10, 5, 15, 20)),
)


class RunsAssertions:
    def assertRuns(self, got, expected, context):
        """``got == expected``, failing with the first difference only (see
        ``first_difference``), so a failure costs no more than a pass while shrinking."""
        if got != expected:
            self.fail(f"{context}: {first_difference(got, expected)}")


class NextRunPropertyTests(RunsAssertions, SimpleTestCase):
    @ci(max_examples=150)
    @given(expression_and_start())
    @examples(*HAND_CASES)
    def test_runs_agree_with_brute_force_across_dst(self, case):
        text, sets, zone, start = case
        tz = ZoneInfo(zone)
        expression = parse(text)
        until = start + HORIZON
        expected = brute_force(sets, tz, start, until)
        context = f"{text!r} in {zone} after {start}"
        self.assertRuns(expression.runs_between(start, until, tz), expected, context)
        nxt = expression.next_run(start, tz)
        if expected:
            self.assertEqual(nxt, expected[0], context)
        else:
            self.assertTrue(nxt is None or nxt > until, f"{context}: {nxt}")
        if nxt is not None:
            self.assertEqual(nxt.tzinfo, UTC)
            self.assertEqual((nxt.second, nxt.microsecond), (0, 0))
            local = nxt.astimezone(tz)
            self.assertTrue(expression.matches(local.replace(tzinfo=None)))
            self.assertEqual(local.fold, 0)

    @ci(max_examples=100)
    @given(expression_and_start())
    def test_next_run_chains_to_runs_between(self, case):
        """next_run from each run gives the following one, whatever the start's seconds."""
        text, _, zone, start = case
        tz = ZoneInfo(zone)
        expression = parse(text)
        runs = expression.runs_between(start, start + HORIZON, tz)
        for before, after in itertools.pairwise(runs):
            self.assertEqual(expression.next_run(before, tz), after)
            # Any instant in between leads to the same next run.
            self.assertEqual(expression.next_run(before + (after - before) / 2, tz), after)


class FarNextRunPropertyTests(SimpleTestCase):
    @ci(max_examples=150)
    @given(rare_expression_and_start())
    @example(("0 0 29 2 1", [{0}, {0}, {29}, {2}, {1}], "UTC", at(2026, 12, 2)))
    @example(("0 0 29 2 0", [{0}, {0}, {29}, {2}, {0}], "Europe/Paris", at(2096, 3, 1)))
    @example(("30 2 31 3 0", [{30}, {2}, {31}, {3}, {0}], "Europe/Paris", at(2025, 1, 1)))
    @example(("0 0 31 4,6 *", [{0}, {0}, {31}, {4, 6}, set(range(7))], "UTC", at(2025, 1, 1)))
    def test_next_run_agrees_with_a_day_by_day_search(self, case):
        """However far the next run is: next_run finds what a search walking every date finds
        within ``FAR_DAYS``; when that search gives up, next_run answers nothing earlier than
        where it stopped; and it answers never exactly when the calendar rules out every date
        (in a zone with DST, also when gaps swallow every run, past what the search walks)."""
        text, sets, zone, start = case
        tz = ZoneInfo(zone)
        expression = parse(text)
        context = f"{text!r} in {zone} after {start}"
        nxt = expression.next_run(start, tz)
        expected, stopped_at = day_by_day(sets, tz, start)
        if expected is not None:
            self.assertEqual(nxt, expected, context)
            # runs_between, which looks no further than its end, agrees.
            self.assertEqual(expression.runs_between(start, expected, tz), [expected], context)
            self.assertEqual(expression.runs_between(start, expected - MINUTE, tz), [],
                             context)
        elif nxt is not None:
            self.assertGreaterEqual(nxt.astimezone(tz).date(), stopped_at, context)
        if not calendar_allows(sets):
            self.assertIsNone(nxt, context)
        elif zone == "UTC":
            self.assertIsNotNone(nxt, context)  # no gaps: the calendar allows it, so it runs
        self.assertEqual(expression.fits_the_calendar, calendar_allows(sets), context)


class ParsePropertyTests(SimpleTestCase):
    @ci(max_examples=200)
    @given(st.tuples(*(field_spec(f) for f in FIELDS)))
    def test_parser_allows_exactly_the_models_values(self, specs):
        text = " ".join(t for t, _ in specs)
        expression = parse(text)
        parsed = [expression.minutes, expression.hours, expression.days, expression.months,
                  expression.weekdays]
        for field, (_, model), values in zip(FIELDS, specs, parsed, strict=True):
            self.assertEqual(set(values), model, f"{field.name} of {text!r}")
        # Extra spaces and tabs between fields do not matter.
        self.assertEqual(parse("  " + "\t ".join(t for t, _ in specs) + " ").weekdays,
                         expression.weekdays)

    @ci(max_examples=100)
    @given(st.sampled_from(FIELDS), st.data())
    def test_out_of_range_values_name_the_field_and_range(self, field, data):
        too_big = st.integers(field.top + 1, field.top + 500)
        value = data.draw(too_big | st.just(0) if field.low else too_big)
        form = data.draw(st.sampled_from(["{v}", "{v}-{v}", "{v}/2", "1,{v}", "*/5,{v}"]))
        texts = ["*"] * 5
        texts[FIELDS.index(field)] = form.format(v=value)
        with self.assertRaises(CronError) as caught:
            parse(" ".join(texts))
        self.assertEqual(str(caught.exception),
                         f"{field.name} field {value} is out of range {field.low}..{field.top}")
