"""System checks of the ``DJANGO_JOBS`` setting."""

import io

from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import SimpleTestCase, override_settings

from django_jobs.checks import check_settings
from django_jobs.conf import jobs_settings


def ids(messages):
    return [message.id for message in messages]


class CheckSettingsTests(SimpleTestCase):
    def assertOnly(self, check_id, messages, count=1):
        self.assertEqual(ids(messages), [check_id] * count, messages)
        for message in messages:
            self.assertIsInstance(message, checks.Error)
            self.assertTrue(message.is_serious())
        return messages

    def test_test_settings_are_valid(self):
        self.assertEqual(check_settings(), [])

    @override_settings(DJANGO_JOBS={})
    def test_empty_setting_is_valid(self):
        self.assertEqual(check_settings(), [])

    def test_missing_setting_is_valid(self):
        with override_settings(DJANGO_JOBS={"QUEUES": {"x": 1}}):
            del settings.DJANGO_JOBS
            jobs_settings.reload()
            self.assertFalse(hasattr(settings, "DJANGO_JOBS"))
            self.assertEqual(check_settings(), [])
            self.assertEqual(jobs_settings.QUEUES, {"default": 10})

    @override_settings(DJANGO_JOBS={
        "DATABASE": "default",
        "QUEUES": {"default": 10, "mailers": 20, "q" * 128: 1},
        "NODE": "web-1",
        "PRUNER": {"max_age": 3600, "limit": 500},
        "CRONTAB": [],
        "ENCRYPTION_KEYS": [],
        "TESTING": "manual",
    })
    def test_full_valid_setting(self):
        self.assertEqual(check_settings(), [])

    def test_testing_modes_are_valid(self):
        for mode in (None, "inline", "manual"):
            with self.subTest(mode=mode), override_settings(DJANGO_JOBS={"TESTING": mode}):
                self.assertEqual(check_settings(), [])

    @override_settings(DJANGO_JOBS=[("QUEUES", {})])
    def test_setting_not_a_dict(self):
        messages = check_settings()
        self.assertEqual(ids(messages), ["django_jobs.E001"])
        self.assertIn("must be a dict", messages[0].msg)

    @override_settings(DJANGO_JOBS={"QUEUS": {"default": 10}})
    def test_unknown_key_suggests_the_closest(self):
        [error] = self.assertOnly("django_jobs.E002", check_settings())
        self.assertIn("'QUEUS'", error.msg)
        self.assertEqual(error.hint, "Did you mean 'QUEUES'?")

    @override_settings(DJANGO_JOBS={"PRUNNER": {}, "TESTNIG": None})
    def test_each_unknown_key_is_reported(self):
        errors = self.assertOnly("django_jobs.E002", check_settings(), count=2)
        self.assertEqual([e.hint for e in errors], ["Did you mean 'PRUNER'?",
                                                    "Did you mean 'TESTING'?"])

    @override_settings(DJANGO_JOBS={"XYZZY": 1})
    def test_unknown_key_without_close_match_lists_valid_keys(self):
        [error] = self.assertOnly("django_jobs.E002", check_settings())
        self.assertIn("Valid keys:", error.hint)
        self.assertIn("QUEUES", error.hint)

    def test_bad_queues(self):
        cases = [
            (["default"], 1),
            ("default", 1),
            ({"default": 0}, 1),
            ({"default": -1}, 1),
            ({"default": "x"}, 1),
            ({"default": 2.5}, 1),
            ({"default": True}, 1),
            ({"default": None}, 1),
            ({"": 5}, 1),
            ({" padded ": 5}, 1),
            ({1: 5}, 1),
            ({"q" * 129: 5}, 1),
            ({"": 0}, 2),
            ({"ok": 1, "bad": 0, "worse": "x"}, 2),
        ]
        for queues, count in cases:
            with self.subTest(queues=queues), override_settings(DJANGO_JOBS={"QUEUES": queues}):
                self.assertOnly("django_jobs.E003", check_settings(), count=count)

    @override_settings(DJANGO_JOBS={"QUEUES": {"mailers": 0}})
    def test_bad_queue_limit_names_the_queue(self):
        [error] = check_settings()
        self.assertIn("'mailers'", error.msg)
        self.assertIn("at least 1", error.msg)

    @override_settings(DJANGO_JOBS={"DATABASE": "defualt"})
    def test_unknown_database_alias(self):
        [error] = self.assertOnly("django_jobs.E004", check_settings())
        self.assertIn("'defualt'", error.msg)
        self.assertEqual(error.hint, "Did you mean 'default'?")

    @override_settings(DJANGO_JOBS={"DATABASE": "jobs"})
    def test_unknown_database_alias_without_close_match(self):
        self.assertOnly("django_jobs.E004", check_settings())

    @override_settings(USE_TZ=False)
    def test_use_tz_false(self):
        [error] = self.assertOnly("django_jobs.E005", check_settings())
        self.assertIn("USE_TZ = True", error.msg)

    def test_bad_pruner(self):
        cases = [
            (5, 1, None),
            ([("max_age", 1)], 1, None),
            ({"max_age": 0}, 1, None),
            ({"max_age": -60}, 1, None),
            ({"max_age": "1d"}, 1, None),
            ({"max_age": True}, 1, None),
            ({"limit": None}, 1, None),
            ({"maxage": 60}, 1, "Did you mean 'max_age'?"),
            ({"max_age": 0, "limit": 0}, 2, None),
        ]
        for pruner, count, hint in cases:
            with self.subTest(pruner=pruner), override_settings(DJANGO_JOBS={"PRUNER": pruner}):
                errors = self.assertOnly("django_jobs.E006", check_settings(), count=count)
                if hint:
                    self.assertEqual(errors[0].hint, hint)

    @override_settings(DJANGO_JOBS={"PRUNER": {"max_age": 60.5}})
    def test_partial_pruner_is_valid(self):
        self.assertEqual(check_settings(), [])

    def test_bad_testing(self):
        for testing in ("auto", "INLINE", True, 1, ""):
            with self.subTest(testing=testing), \
                    override_settings(DJANGO_JOBS={"TESTING": testing}):
                [error] = self.assertOnly("django_jobs.E007", check_settings())
                self.assertIn(repr(testing), error.msg)

    @override_settings(USE_TZ=False, DJANGO_JOBS={"QUEUS": {}, "QUEUES": {"a": 0},
                                                  "DATABASE": "nope", "PRUNER": 1,
                                                  "TESTING": "x"})
    def test_every_problem_is_reported_at_once(self):
        self.assertEqual(sorted(ids(check_settings())),
                         ["django_jobs.E002", "django_jobs.E003", "django_jobs.E004",
                          "django_jobs.E005", "django_jobs.E006", "django_jobs.E007"])


class CheckFrameworkTests(SimpleTestCase):
    def test_check_is_registered(self):
        self.assertIn(check_settings, checks.registry.registry.get_checks())

    @override_settings(DJANGO_JOBS={"QUEUES": {"default": 0}})
    def test_run_checks_reports_it(self):
        self.assertIn("django_jobs.E003", ids(checks.run_checks()))

    @override_settings(DJANGO_JOBS={"QUEUS": {}})
    def test_check_command_fails(self):
        with self.assertRaises(SystemCheckError) as ctx:
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
        self.assertIn("django_jobs.E002", str(ctx.exception))

    def test_check_command_passes(self):
        out = io.StringIO()
        call_command("check", stdout=out)  # raises SystemCheckError on any error
        self.assertIn("no issues", out.getvalue())
