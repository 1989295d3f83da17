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
force found nothing within it.
"""

import datetime
import functools
import itertools
from zoneinfo import ZoneInfo

from django.test import SimpleTestCase
from hypothesis import example, given, settings, strategies as st

from django_jobs.crontab import CronError, parse

UTC = datetime.UTC
MINUTE = datetime.timedelta(minutes=1)
HORIZON = datetime.timedelta(days=2)
ZONES = ("Europe/Paris", "America/New_York", "Australia/Lord_Howe")

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
    if field is WEEKDAY_F and range_end and value == 0:
        return "0"  # "SUN" at the end of a range is 7: "0-SUN" is every day
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
    text = f"{draw(rendered(field, first))}-{draw(rendered(field, last, range_end=True))}"
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


class NextRunPropertyTests(SimpleTestCase):
    @settings(max_examples=150, deadline=None)
    @given(expression_and_start())
    @examples(*HAND_CASES)
    def test_runs_agree_with_brute_force_across_dst(self, case):
        text, sets, zone, start = case
        tz = ZoneInfo(zone)
        expression = parse(text)
        until = start + HORIZON
        expected = brute_force(sets, tz, start, until)
        self.assertEqual(expression.runs_between(start, until, tz), expected,
                         f"{text!r} in {zone} after {start}")
        nxt = expression.next_run(start, tz)
        if expected:
            self.assertEqual(nxt, expected[0], f"{text!r} in {zone} after {start}")
        else:
            self.assertTrue(nxt is None or nxt > until, f"{text!r} in {zone}: {nxt}")
        if nxt is not None:
            self.assertEqual(nxt.tzinfo, UTC)
            self.assertEqual((nxt.second, nxt.microsecond), (0, 0))
            local = nxt.astimezone(tz)
            self.assertTrue(expression.matches(local.replace(tzinfo=None)))
            self.assertEqual(local.fold, 0)

    @settings(max_examples=100, deadline=None)
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


class ParsePropertyTests(SimpleTestCase):
    @settings(max_examples=200, deadline=None)
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

    @settings(max_examples=100, deadline=None)
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
