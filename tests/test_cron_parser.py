"""The cron expression parser (django_jobs.crontab), by example.

The property-based tests (random expressions against a brute-force search, across DST
changes) are in test_cron_properties.py.
"""

import calendar
import datetime
import time
from unittest import mock
from zoneinfo import ZoneInfo

from django.test import SimpleTestCase

from django_jobs import crontab
from django_jobs.exceptions import InvalidJobError
from django_jobs.crontab import (
    HORIZON, CronError, Expression, parse, timezone_named, to_utc,
)

UTC = datetime.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
ALL_MINUTES = set(range(60))
ALL_HOURS = set(range(24))
ALL_DAYS = set(range(1, 32))
ALL_MONTHS = set(range(1, 13))
ALL_WEEKDAYS = set(range(7))


def at(*args, **kwargs):
    return datetime.datetime(*args, **kwargs, tzinfo=UTC)


def fields(text):
    e = parse(text)
    return [set(e.minutes), set(e.hours), set(e.days), set(e.months), set(e.weekdays)]


class ParseFieldTests(SimpleTestCase):
    def test_forms_of_a_field(self):
        cases = {
            "*": ALL_MINUTES,
            "7": {7},
            "0": {0},
            "59": {59},
            "10-14": {10, 11, 12, 13, 14},
            "*/15": {0, 15, 30, 45},
            "*/7": {0, 7, 14, 21, 28, 35, 42, 49, 56},
            "1-30/5": {1, 6, 11, 16, 21, 26},
            "5/10": {5, 15, 25, 35, 45, 55},         # from 5 to the end of the field
            "58/1": {58, 59},
            "*/60": {0},                              # a step larger than the field
            "1,2,3": {1, 2, 3},
            "0-4,30,50-59/3": {0, 1, 2, 3, 4, 30, 50, 53, 56, 59},
            "3,3,3": {3},
        }
        for text, expected in cases.items():
            with self.subTest(text=text):
                self.assertEqual(fields(f"{text} * * * *")[0], expected)

    def test_every_field_has_its_own_range(self):
        self.assertEqual(fields("* * * * *"),
                         [ALL_MINUTES, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS])
        self.assertEqual(fields("*/20 */6 */10 */3 */2"),
                         [{0, 20, 40}, {0, 6, 12, 18}, {1, 11, 21, 31}, {1, 4, 7, 10},
                          {0, 2, 4, 6}])
        self.assertEqual(fields("59 23 31 12 6"), [{59}, {23}, {31}, {12}, {6}])
        self.assertEqual(fields("0 0 1 1 0"), [{0}, {0}, {1}, {1}, {0}])

    def test_month_names_in_any_case(self):
        self.assertEqual(fields("* * * JAN *")[3], {1})
        self.assertEqual(fields("* * * dec *")[3], {12})
        self.assertEqual(fields("* * * Mar-May *")[3], {3, 4, 5})
        self.assertEqual(fields("* * * jan-DEC/3 *")[3], {1, 4, 7, 10})
        self.assertEqual(fields("* * * JAN,jul,12 *")[3], {1, 7, 12})
        self.assertEqual(fields("* * * FEB/4 *")[3], {2, 6, 10})

    def test_weekday_names_and_numbers(self):
        self.assertEqual(fields("* * * * SUN")[4], {0})
        self.assertEqual(fields("* * * * sat")[4], {6})
        self.assertEqual(fields("* * * * MON-FRI")[4], {1, 2, 3, 4, 5})
        self.assertEqual(fields("* * * * mon,Wed,FRI")[4], {1, 3, 5})
        self.assertEqual(fields("* * * * 0-6")[4], ALL_WEEKDAYS)
        self.assertEqual(fields("* * * * SUN-SAT")[4], ALL_WEEKDAYS)

    def test_seven_is_sunday(self):
        self.assertEqual(fields("* * * * 7")[4], {0})
        self.assertEqual(fields("* * * * 5-7")[4], {5, 6, 0})
        self.assertEqual(fields("* * * * 0,7")[4], {0})
        self.assertEqual(fields("* * * * 0-7")[4], ALL_WEEKDAYS)
        # Sunday written at the end of a range is 7: "MON-SUN" is the whole week.
        self.assertEqual(fields("* * * * MON-SUN")[4], ALL_WEEKDAYS)
        self.assertEqual(fields("* * * * SAT-SUN")[4], {6, 0})
        self.assertEqual(fields("* * * * FRI-7")[4], {5, 6, 0})

    def test_start_and_step_in_day_of_week_runs_to_seven(self):
        # "a/n" runs to the end of the field, which for day-of-week is 7 (Sunday), as in
        # cronie: 1/2 is Monday, Wednesday, Friday and Sunday; write 1-6/2 for MON,WED,FRI.
        self.assertEqual(fields("* * * * 1/2")[4], {1, 3, 5, 0})
        self.assertEqual(fields("* * * * 1-6/2")[4], {1, 3, 5})
        self.assertEqual(fields("* * * * */2")[4], {0, 2, 4, 6})

    def test_sun_to_sun_is_sunday_only(self):
        self.assertEqual(fields("* * * * SUN-SUN")[4], {0})

    def test_whitespace_is_normalised(self):
        expression = parse("  0\t 9   * *  MON-FRI ")
        self.assertEqual(expression.text, "0 9 * * MON-FRI")
        self.assertEqual(expression, parse("0 9 * * MON-FRI"))

    def test_expression_is_a_frozen_value(self):
        expression = parse("*/5 * * * *")
        self.assertIsInstance(expression, Expression)
        self.assertIs(parse("*/5 * * * *"), expression)  # parsed once, then cached
        with self.assertRaises(AttributeError):
            expression.minutes = frozenset()


class NicknameTests(SimpleTestCase):
    def test_nicknames(self):
        cases = {
            "@yearly": "0 0 1 1 *",
            "@annually": "0 0 1 1 *",
            "@monthly": "0 0 1 * *",
            "@weekly": "0 0 * * 0",
            "@daily": "0 0 * * *",
            "@midnight": "0 0 * * *",
            "@hourly": "0 * * * *",
        }
        for nickname, spelled in cases.items():
            with self.subTest(nickname=nickname):
                self.assertEqual(fields(nickname), fields(spelled))
                self.assertEqual(fields(nickname.upper()), fields(spelled))
                self.assertEqual(parse(nickname).text, nickname)
                self.assertFalse(parse(nickname).reboot)

    def test_reboot_has_no_time(self):
        expression = parse("@reboot")
        self.assertTrue(expression.reboot)
        self.assertTrue(parse("@REBOOT").reboot)
        self.assertIsNone(expression.next_run(at(2025, 1, 1)))
        self.assertEqual(expression.runs_between(at(2025, 1, 1), at(2025, 2, 1)), [])
        self.assertFalse(expression.matches(datetime.datetime(2025, 1, 1)))


class ParseErrorTests(SimpleTestCase):
    def assertCronError(self, text, message):
        with self.assertRaises(CronError) as caught:
            parse(text)
        self.assertEqual(str(caught.exception), message)

    def test_values_out_of_range_name_the_field_and_range(self):
        cases = {
            "60 * * * *": "minute field 60 is out of range 0..59",
            "* 24 * * *": "hour field 24 is out of range 0..23",
            "* * 0 * *": "day-of-month field 0 is out of range 1..31",
            "* * 32 * *": "day-of-month field 32 is out of range 1..31",
            "* * * 0 *": "month field 0 is out of range 1..12",
            "* * * 13 *": "month field 13 is out of range 1..12",
            # 7 is accepted as Sunday, so the range of day-of-week reads 0..7.
            "* * * * 8": "day-of-week field 8 is out of range 0..7",
            "0-60 * * * *": "minute field 60 is out of range 0..59",
            "1,99 * * * *": "minute field 99 is out of range 0..59",
            "* 25/2 * * *": "hour field 25 is out of range 0..23",
        }
        for text, message in cases.items():
            with self.subTest(text=text):
                self.assertCronError(text, message)

    def test_malformed_expressions(self):
        fields_hint = "it needs 5: minute hour day-of-month month day-of-week"
        cases = {
            "* * * *": f"cron expression '* * * *' has 4 fields; {fields_hint}",
            "* * * * * *": f"cron expression '* * * * * *' has 6 fields; {fields_hint}",
            "": f"cron expression '' has 1 fields; {fields_hint}",
            "a * * * *": "minute field value 'a' is not a number",
            "JAN * * * *": "minute field value 'JAN' is not a number",
            "* * * FOO *": "month field value 'FOO' is not a number or a name (JAN, FEB, MAR, "
                           "APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC)",
            "* * * * FUN": "day-of-week field value 'FUN' is not a number or a name (SUN, MON, "
                           "TUE, WED, THU, FRI, SAT)",
            "*/0 * * * *": "minute field step '0' must be a whole number of at least 1",
            "*/x * * * *": "minute field step 'x' must be a whole number of at least 1",
            "*/ * * * *": "minute field step '' must be a whole number of at least 1",
            "5-1 * * * *": "minute field range '5-1' runs backwards (5 > 1)",
            "* * * * FRI-MON": "day-of-week field range 'FRI-MON' runs backwards (5 > 1)",
            "1,,2 * * * *": "minute field '1,,2' has an empty list item",
            "-5 * * * *": "minute field value '' is not a number",
            "1.5 * * * *": "minute field value '1.5' is not a number",
        }
        for text, message in cases.items():
            with self.subTest(text=text):
                self.assertCronError(text, message)

    def test_unknown_nickname(self):
        self.assertCronError("@fortnightly",
                             "unknown cron nickname '@fortnightly'; use one of @yearly, "
                             "@annually, @monthly, @weekly, @daily, @midnight, @hourly, @reboot")

    def test_not_a_string(self):
        for value in (None, 5, ["*"] * 5):
            with self.subTest(value=value):
                with self.assertRaises(CronError) as caught:
                    parse(value)
                self.assertIn("a cron expression must be a string", str(caught.exception))

    def test_cron_error_is_an_invalid_job_error(self):
        self.assertTrue(issubclass(CronError, InvalidJobError))
        self.assertTrue(issubclass(CronError, ValueError))


class MatchTests(SimpleTestCase):
    def test_all_five_fields_must_match(self):
        expression = parse("30 9 * * MON-FRI")
        self.assertTrue(expression.matches(datetime.datetime(2025, 1, 6, 9, 30)))  # Monday
        self.assertFalse(expression.matches(datetime.datetime(2025, 1, 6, 9, 31)))
        self.assertFalse(expression.matches(datetime.datetime(2025, 1, 6, 10, 30)))
        self.assertFalse(expression.matches(datetime.datetime(2025, 1, 5, 9, 30)))  # Sunday
        # Aware datetimes are read as they are (their own wall clock).
        self.assertTrue(expression.matches(datetime.datetime(2025, 1, 6, 9, 30, tzinfo=PARIS)))

    def test_day_of_month_and_day_of_week_are_combined_with_and(self):
        # Oban's rule: both day fields must match. Vixie cron would run on every 13th and
        # every Friday.
        friday_13th = parse("0 0 13 * FRI")
        runs = friday_13th.runs_between(at(2025, 1, 1), at(2027, 1, 1))
        self.assertEqual(runs, [at(2025, 6, 13), at(2026, 2, 13), at(2026, 3, 13),
                                at(2026, 11, 13)])
        self.assertEqual(len(parse("0 0 13 * *").runs_between(at(2025, 1, 1),
                                                              at(2027, 1, 1))), 24)
        self.assertEqual(len(parse("0 0 * * FRI").runs_between(at(2025, 1, 1),
                                                               at(2026, 12, 31))), 104)
        # A restricted day-of-month with a "*" day-of-week is just the day of month.
        self.assertEqual(parse("0 0 1 * *").next_run(at(2025, 1, 15)), at(2025, 2, 1))


class NextRunTests(SimpleTestCase):
    def test_next_run_is_strictly_after(self):
        every_quarter = parse("*/15 * * * *")
        self.assertEqual(every_quarter.next_run(at(2025, 1, 6, 12, 7, 30)),
                         at(2025, 1, 6, 12, 15))
        self.assertEqual(every_quarter.next_run(at(2025, 1, 6, 12, 15)),
                         at(2025, 1, 6, 12, 30))
        self.assertEqual(every_quarter.next_run(at(2025, 1, 6, 12, 14, 59, 999999)),
                         at(2025, 1, 6, 12, 15))
        self.assertEqual(every_quarter.next_run(at(2025, 12, 31, 23, 50)), at(2026, 1, 1))

    def test_next_run_of_rare_expressions(self):
        self.assertEqual(parse("@yearly").next_run(at(2025, 1, 1)), at(2026, 1, 1))
        self.assertEqual(parse("0 0 29 2 *").next_run(at(2025, 3, 1)), at(2028, 2, 29))
        self.assertEqual(parse("0 0 31 * *").next_run(at(2025, 4, 1)), at(2025, 5, 31))
        self.assertEqual(parse("@weekly").next_run(at(2025, 1, 6)), at(2025, 1, 12))  # Sunday

    def test_expressions_that_never_run(self):
        for text in ("0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 APR *", "0 0 30,31 FEB MON"):
            with self.subTest(text=text):
                self.assertFalse(parse(text).fits_the_calendar)
                self.assertIsNone(parse(text).next_run(at(2025, 1, 1)))
                self.assertEqual(parse(text).runs_between(at(2025, 1, 1), at(2030, 1, 1)), [])
        self.assertTrue(parse("0 0 29-31 2 MON").fits_the_calendar)
        self.assertTrue(parse("0 0 31 4,5 *").fits_the_calendar)

    def test_the_result_is_utc_whatever_the_input_zone(self):
        after = datetime.datetime(2025, 1, 6, 13, 7, tzinfo=PARIS)  # 12:07 UTC
        nxt = parse("*/15 * * * *").next_run(after)
        self.assertEqual(nxt, at(2025, 1, 6, 12, 15))
        self.assertIs(nxt.tzinfo, UTC)

    def test_time_zone_of_the_expression(self):
        weekday_nine = parse("0 9 * * MON-FRI")
        # Paris is UTC+1 in winter, UTC+2 in summer.
        self.assertEqual(weekday_nine.next_run(at(2025, 1, 4), PARIS), at(2025, 1, 6, 8))
        self.assertEqual(weekday_nine.next_run(at(2025, 7, 5), PARIS), at(2025, 7, 7, 7))
        self.assertEqual(weekday_nine.next_run(at(2025, 7, 5), NEW_YORK), at(2025, 7, 7, 13))
        self.assertEqual(weekday_nine.next_run(at(2025, 7, 5)), at(2025, 7, 7, 9))
        # The day of week is the one of the zone's wall clock: Monday 09:00 in Sydney is
        # Sunday 23:00 UTC.
        self.assertEqual(weekday_nine.next_run(at(2025, 7, 5), ZoneInfo("Australia/Sydney")),
                         at(2025, 7, 6, 23))

    def test_runs_between_excludes_the_start_and_includes_the_end(self):
        hourly = parse("@hourly")
        self.assertEqual(hourly.runs_between(at(2025, 1, 1, 10), at(2025, 1, 1, 13)),
                         [at(2025, 1, 1, 11), at(2025, 1, 1, 12), at(2025, 1, 1, 13)])
        self.assertEqual(hourly.runs_between(at(2025, 1, 1, 10), at(2025, 1, 1, 10, 59)), [])


class FarNextRunTests(SimpleTestCase):
    """A next run years away is found, in a few steps per year; "never" is decided exactly."""

    def test_february_29th_on_a_monday(self):
        # The next leap day that is a Monday after 2026 is in 2044, 18 years away.
        rare = parse("0 0 29 2 1")
        self.assertEqual(rare.next_run(at(2026, 12, 2)), at(2044, 2, 29))
        self.assertEqual(rare.next_run(at(2044, 2, 29)), at(2072, 2, 29))
        # 2100 is no leap year: from 2096 on, the next Sunday the 29th of February is in 2128.
        self.assertEqual(parse("0 0 29 2 SUN").next_run(at(2096, 3, 1)), at(2128, 2, 29))

    def test_the_next_leap_day(self):
        leap_day = parse("0 0 29 2 *")
        self.assertEqual(leap_day.next_run(at(2026, 12, 2)), at(2028, 2, 29))
        self.assertEqual(leap_day.next_run(at(2028, 2, 29)), at(2032, 2, 29))
        self.assertEqual(leap_day.next_run(at(2096, 2, 29, 0, 0, 1)), at(2104, 2, 29))  # not 2100
        self.assertEqual(leap_day.runs_between(at(2025, 1, 1), at(2037, 1, 1)),
                         [at(2028, 2, 29), at(2032, 2, 29), at(2036, 2, 29)])

    def test_in_a_zone_with_daylight_saving_time(self):
        rare = parse("0 0 29 2 1")
        # Midnight in New York in February is 05:00 UTC (EST).
        self.assertEqual(rare.next_run(at(2026, 12, 2), NEW_YORK), at(2044, 2, 29, 5))
        # 02:30 on Sunday the 31st of March in Paris: that is the last Sunday of March, when
        # 02:00 becomes 03:00, so it never exists; 03:30 does (in 2030, 01:30 UTC).
        self.assertIsNone(parse("30 2 31 3 SUN").next_run(at(2025, 1, 1), PARIS))
        self.assertEqual(parse("30 2,3 31 3 SUN").next_run(at(2025, 1, 1), PARIS),
                         at(2030, 3, 31, 1, 30))
        # The last Sunday of March at 02:xx in Paris, every minute of it in the gap.
        self.assertIsNone(parse("* 2 25-31 MAR SUN").next_run(at(2025, 1, 1), PARIS))
        # Lord Howe skips 02:00-02:29 on the first Sunday of October: 02:15 then never runs,
        # 02:45 does.
        self.assertIsNone(parse("15 2 1-7 OCT SUN").next_run(at(2025, 1, 1), LORD_HOWE))
        self.assertEqual(parse("45 2 1-7 OCT SUN").next_run(at(2025, 1, 1), LORD_HOWE),
                         at(2025, 10, 4, 15, 45))

    def test_a_rare_run_takes_few_steps(self):
        # Every wall-clock minute tried costs a to_utc() call: a search stepping minute by
        # minute (or day by day, trying midnight) would make thousands.
        cases = [
            ("0 0 29 2 1", None, at(2026, 12, 2), 1),        # 2044: only the run itself
            ("0 0 30 2 *", None, at(2026, 12, 2), 0),        # never: from the fields alone
            ("0 0 29 2 *", NEW_YORK, at(2026, 12, 2), 1),
            # Never in Paris: each year one minute of the gap is tried, then the rest of the
            # gap is skipped; 400 years, and the search stops.
            ("* 2 25-31 MAR SUN", PARIS, at(2025, 1, 1), 401),
        ]
        for text, tz, after, most in cases:
            with self.subTest(text=text), mock.patch.object(
                    crontab, "to_utc", wraps=to_utc) as counted:
                started = time.perf_counter()
                parse(text).next_run(after, tz)
                elapsed = time.perf_counter() - started
                self.assertLessEqual(counted.call_count, most)
                self.assertLess(elapsed, 1.0)  # a few milliseconds in fact

    def test_runs_between_looks_no_further_than_its_end(self):
        with mock.patch.object(crontab, "to_utc", wraps=to_utc) as counted:
            self.assertEqual(parse("* 2 25-31 MAR SUN").runs_between(
                at(2025, 1, 1), at(2025, 3, 1), PARIS), [])
            self.assertEqual(parse("0 0 29 2 1").runs_between(at(2026, 12, 2),
                                                               at(2027, 1, 1)), [])
        self.assertEqual(counted.call_count, 0)

    def test_never_is_decided_over_400_years(self):
        # The Gregorian calendar repeats after 400 years, a whole number of weeks.
        self.assertEqual(HORIZON, datetime.timedelta(days=400 * 365 + 97))
        self.assertEqual(HORIZON.days % 7, 0)
        # So every date that exists falls on each weekday within 400 years (February 29th
        # too): only month and day combinations can rule an expression out.
        for month in range(1, 13):
            for day in range(1, calendar.monthrange(2000, month)[1] + 1):  # 2000 is leap
                weekdays = {datetime.date(year, month, day).isoweekday()
                            for year in range(2000, 2400)
                            if day <= calendar.monthrange(year, month)[1]}
                self.assertEqual(len(weekdays), 7, f"{month}-{day}")

    def test_the_end_of_time(self):
        # Python has no date after 9999-12-31: no run there, and no OverflowError.
        self.assertIsNone(parse("0 0 29 2 1").next_run(at(9990, 1, 1)))
        self.assertIsNone(parse("59 23 31 12 *").next_run(at(9999, 12, 31, 12), NEW_YORK))
        self.assertEqual(parse("59 23 31 12 *").next_run(at(9999, 12, 31, 12)),
                         at(9999, 12, 31, 23, 59))


class DaylightSavingTests(SimpleTestCase):
    """A wall-clock minute skipped when clocks go forward does not run; one that happens twice
    when clocks go back runs the first time only."""

    def test_paris_spring_forward_skips_the_missing_time(self):
        # 2024-03-31: 02:00 CET becomes 03:00 CEST (at 01:00 UTC); 02:30 does not exist.
        runs = parse("30 2 * * *").runs_between(at(2024, 3, 29), at(2024, 4, 2), PARIS)
        self.assertEqual(runs, [at(2024, 3, 29, 1, 30), at(2024, 3, 30, 1, 30),
                                at(2024, 4, 1, 0, 30)])
        # The hour after the gap is there, in summer time.
        self.assertEqual(parse("30 3 * * *").next_run(at(2024, 3, 30, 12), PARIS),
                         at(2024, 3, 31, 1, 30))
        # Every minute of the night: 60 minutes fewer that day.
        minutes = parse("* * * * *").runs_between(at(2024, 3, 30, 23), at(2024, 3, 31, 2),
                                                  PARIS)
        self.assertEqual(len(minutes), 180)
        self.assertEqual(len(set(minutes)), 180)

    def test_paris_fall_back_runs_the_repeated_time_once(self):
        # 2024-10-27: 03:00 CEST becomes 02:00 CET (at 01:00 UTC); 02:00-02:59 happens twice.
        runs = parse("30 2 * * *").runs_between(at(2024, 10, 26), at(2024, 10, 29), PARIS)
        self.assertEqual(runs, [at(2024, 10, 26, 0, 30), at(2024, 10, 27, 0, 30),
                                at(2024, 10, 28, 1, 30)])
        # Every half hour from 00:00 to 04:00 UTC (02:00 CEST to 05:00 CET): the second
        # 02:00 and 02:30 are skipped.
        half_hours = parse("*/30 * * * *").runs_between(at(2024, 10, 26, 23, 59),
                                                        at(2024, 10, 27, 4), PARIS)
        self.assertEqual(half_hours, [at(2024, 10, 27, 0), at(2024, 10, 27, 0, 30),
                                      at(2024, 10, 27, 2), at(2024, 10, 27, 2, 30),
                                      at(2024, 10, 27, 3), at(2024, 10, 27, 3, 30),
                                      at(2024, 10, 27, 4)])

    def test_starting_inside_the_repeated_hour(self):
        every_20 = parse("*/20 2 * * *")
        # In the first 02:xx (CEST): the rest of it.
        self.assertEqual(every_20.next_run(at(2024, 10, 27, 0, 25), PARIS),
                         at(2024, 10, 27, 0, 40))
        # In the second 02:xx (CET): nothing until the next night.
        self.assertEqual(every_20.next_run(at(2024, 10, 27, 1, 5), PARIS),
                         at(2024, 10, 28, 1, 0))

    def test_new_york(self):
        # 2024-03-10: 02:00 EST becomes 03:00 EDT; 2024-11-03: 02:00 EDT becomes 01:00 EST.
        self.assertEqual(parse("0 2 * * *").runs_between(at(2024, 3, 9), at(2024, 3, 12),
                                                         NEW_YORK),
                         [at(2024, 3, 9, 7), at(2024, 3, 11, 6)])
        self.assertEqual(parse("30 1 * * *").runs_between(at(2024, 11, 2), at(2024, 11, 5),
                                                          NEW_YORK),
                         [at(2024, 11, 2, 5, 30), at(2024, 11, 3, 5, 30),
                          at(2024, 11, 4, 6, 30)])

    def test_lord_howe_moves_by_thirty_minutes(self):
        # 2024-04-07: 02:00 (+11) becomes 01:30 (+10:30): 01:30-01:59 happens twice.
        self.assertEqual(parse("45 1 * * *").runs_between(at(2024, 4, 5), at(2024, 4, 8),
                                                          LORD_HOWE),
                         [at(2024, 4, 5, 14, 45), at(2024, 4, 6, 14, 45),
                          at(2024, 4, 7, 15, 15)])
        # 2024-10-06: 02:00 (+10:30) becomes 02:30 (+11): 02:00-02:29 does not exist.
        self.assertEqual(parse("15,45 2 * * *").runs_between(at(2024, 10, 4, 16),
                                                             at(2024, 10, 7), LORD_HOWE),
                         [at(2024, 10, 4, 16, 15),                       # 02:45 on the 5th
                          at(2024, 10, 5, 15, 45),                       # 02:45 on the 6th
                          at(2024, 10, 6, 15, 15), at(2024, 10, 6, 15, 45)])


class TimeZoneHelperTests(SimpleTestCase):
    def test_to_utc(self):
        self.assertEqual(to_utc(datetime.datetime(2025, 1, 6, 9), PARIS), at(2025, 1, 6, 8))
        # In a gap: None.
        self.assertIsNone(to_utc(datetime.datetime(2024, 3, 31, 2, 30), PARIS))
        self.assertIsNone(to_utc(datetime.datetime(2024, 10, 6, 2, 15), LORD_HOWE))
        # Twice: the first time.
        self.assertEqual(to_utc(datetime.datetime(2024, 10, 27, 2, 30), PARIS),
                         at(2024, 10, 27, 0, 30))
        self.assertEqual(to_utc(datetime.datetime(2024, 10, 27, 2, 30, fold=1), PARIS),
                         at(2024, 10, 27, 0, 30))

    def test_timezone_named(self):
        self.assertEqual(timezone_named(None), ZoneInfo("UTC"))
        self.assertEqual(timezone_named("Europe/Paris"), PARIS)
        for name in ("Mars/Olympus", "", "../etc/passwd"):
            with self.subTest(name=name), self.assertRaises(CronError) as caught:
                timezone_named(name)
            self.assertEqual(str(caught.exception),
                             f"unknown time zone {name!r}; use an IANA name such as "
                             f"'Europe/Paris'")
