"""``jobs_settings``: ``DJANGO_JOBS`` over the defaults, reloaded when settings change."""

from django.conf import settings
from django.test import SimpleTestCase, override_settings

from django_jobs.conf import DEFAULTS, jobs_settings


class DefaultsTests(SimpleTestCase):
    def test_defaults(self):
        self.assertEqual(DEFAULTS["DATABASE"], "default")
        self.assertEqual(DEFAULTS["QUEUES"], {"default": 10})
        self.assertIsNone(DEFAULTS["NODE"])
        self.assertEqual(DEFAULTS["PRUNER"], {"max_age": 7 * 24 * 3600, "interval": 30.0,
                                              "limit": 10_000, "by_state": {}, "by_queue": {},
                                              "by_worker": {}})
        self.assertEqual(DEFAULTS["CRONTAB"], [])
        self.assertEqual(DEFAULTS["CRON_TIMEZONE"], "UTC")
        self.assertEqual(DEFAULTS["ENCRYPTION_KEYS"], [])
        self.assertIsNone(DEFAULTS["TESTING"])
        self.assertEqual(DEFAULTS["REMOTE_WORKERS"], [])

    @override_settings(DJANGO_JOBS={})
    def test_empty_setting_gives_every_default(self):
        for name, default in DEFAULTS.items():
            with self.subTest(name=name):
                self.assertEqual(getattr(jobs_settings, name), default)

    def test_test_settings_are_read(self):
        # tests/settings.py: DJANGO_JOBS = {"QUEUES": {"default": 10, "mailers": 5}}
        self.assertEqual(jobs_settings.QUEUES, settings.DJANGO_JOBS["QUEUES"])
        self.assertEqual(jobs_settings.QUEUES, {"default": 10, "mailers": 5})
        self.assertEqual(jobs_settings.DATABASE, "default")
        self.assertEqual(jobs_settings.PRUNER, DEFAULTS["PRUNER"])

    def test_unknown_name_is_an_attribute_error(self):
        with self.assertRaises(AttributeError) as ctx:
            jobs_settings.QUEUE  # noqa: B018
        self.assertIn("'QUEUE'", str(ctx.exception))
        self.assertFalse(hasattr(jobs_settings, "nope"))

    @override_settings(DJANGO_JOBS="not a dict")
    def test_non_dict_setting_falls_back_to_defaults(self):
        self.assertEqual(jobs_settings.QUEUES, DEFAULTS["QUEUES"])
        self.assertEqual(jobs_settings.DATABASE, "default")

    def test_defaults_are_not_shared_mutable_state(self):
        with override_settings(DJANGO_JOBS={"PRUNER": {"limit": 5}}):
            jobs_settings.PRUNER["max_age"] = 1
            jobs_settings.PRUNER["by_state"]["completed"] = 1
        self.assertEqual(DEFAULTS["PRUNER"]["max_age"], 7 * 24 * 3600)
        self.assertEqual(DEFAULTS["PRUNER"]["by_state"], {})


class OverrideTests(SimpleTestCase):
    def test_user_values_override_defaults(self):
        user = {"DATABASE": "default", "QUEUES": {"a": 1, "b": 2}, "NODE": "node-7",
                "CRONTAB": [("* * * * *", "tests.workers.NoopWorker")],
                "ENCRYPTION_KEYS": ["k1"], "TESTING": "inline"}
        with override_settings(DJANGO_JOBS=user):
            for name, value in user.items():
                with self.subTest(name=name):
                    self.assertEqual(getattr(jobs_settings, name), value)

    @override_settings(DJANGO_JOBS={"QUEUES": {"only": 3}})
    def test_queues_replace_the_default_queues(self):
        self.assertEqual(jobs_settings.QUEUES, {"only": 3})

    @override_settings(DJANGO_JOBS={"PRUNER": {"max_age": 60}})
    def test_pruner_merges_with_its_defaults(self):
        self.assertEqual(jobs_settings.PRUNER, {**DEFAULTS["PRUNER"], "max_age": 60})

    @override_settings(DJANGO_JOBS={"PRUNER": False})
    def test_pruner_can_be_turned_off(self):
        self.assertIs(jobs_settings.PRUNER, False)

    def test_reload_on_override_and_back(self):
        self.assertEqual(jobs_settings.QUEUES, {"default": 10, "mailers": 5})
        with override_settings(DJANGO_JOBS={"QUEUES": {"x": 1}, "NODE": "n1"}):
            self.assertEqual(jobs_settings.QUEUES, {"x": 1})
            self.assertEqual(jobs_settings.NODE, "n1")
            with override_settings(DJANGO_JOBS={"QUEUES": {"y": 2}}):
                self.assertEqual(jobs_settings.QUEUES, {"y": 2})
                self.assertIsNone(jobs_settings.NODE)
            self.assertEqual(jobs_settings.QUEUES, {"x": 1})
            self.assertEqual(jobs_settings.NODE, "n1")
        self.assertEqual(jobs_settings.QUEUES, {"default": 10, "mailers": 5})
        self.assertIsNone(jobs_settings.NODE)

    def test_values_are_cached_until_reload(self):
        first = jobs_settings.PRUNER
        self.assertIs(jobs_settings.PRUNER, first)
        jobs_settings.reload()
        self.assertIsNot(jobs_settings.PRUNER, first)
        self.assertEqual(jobs_settings.PRUNER, first)

    def test_unrelated_setting_change_keeps_the_cache(self):
        value = jobs_settings.PRUNER
        with override_settings(DEBUG=True):
            self.assertIs(jobs_settings.PRUNER, value)

    def test_decorated_class_sees_override(self):
        @override_settings(DJANGO_JOBS={"TESTING": "manual"})
        def read():
            return jobs_settings.TESTING

        self.assertEqual(read(), "manual")
        self.assertIsNone(jobs_settings.TESTING)
