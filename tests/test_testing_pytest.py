"""Testing helpers, part 5: the pytest plugin, run for real in a subprocess.

``python -m pytest tests/pytest_project`` runs tests/pytest_project/test_plugin.py with
pytest-django and the conftest.py of docs/testing.md; the plugin is loaded through its
``pytest11`` entry point. A second run, of tests/pytest_project/failing_example.py, fails on
purpose to show what pytest prints for a failed ``assert_enqueued``.

The subprocess gets a test database of its own (``DJANGO_JOBS_TEST_DB`` + "_pytest"), so it
never touches the one this suite is using.
"""

import os
import re
import subprocess
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from .processes import REPO as ROOT, run_python

PROJECT = "tests/pytest_project"


def subprocess_env() -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    name = connection.settings_dict["TEST"]["NAME"] or os.environ["DJANGO_JOBS_TEST_DB"]
    if name.endswith(".sqlite3"):
        env["DJANGO_JOBS_TEST_DB"] = name[:-len(".sqlite3")] + "-pytest.sqlite3"
    else:
        env["DJANGO_JOBS_TEST_DB"] = f"{name}_pytest"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    return run_python(["-m", "pytest", *args, "-p", "no:cacheprovider"], timeout=300,
                      env=subprocess_env())


class PytestPluginTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plugin = run_pytest(PROJECT)
        cls.failing = run_pytest(f"{PROJECT}/failing_example.py")

    def explain(self, result) -> str:
        return f"\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"

    def test_the_plugin_tests_pass(self):
        result = self.plugin
        self.assertEqual(result.returncode, 0, self.explain(result))
        summary = result.stdout.strip().splitlines()[-1]
        self.assertRegex(summary, r"^=+ 12 passed in [\d.]+s =+$", self.explain(result))

    def test_the_plugin_is_loaded_by_its_entry_point(self):
        # pytest lists plugins loaded from entry points as "name-version".
        self.assertRegex(self.plugin.stdout, r"plugins: .*django-jobs-\d",
                         self.explain(self.plugin))
        self.assertIn(f"rootdir: {ROOT / PROJECT}", self.plugin.stdout)

    def test_a_failed_assertion_shows_the_criteria_and_the_enqueued_jobs(self):
        result = self.failing
        self.assertEqual(result.returncode, 1, self.explain(result))
        self.assertIn("FAILED tests/pytest_project/failing_example.py::"
                      "test_fails_and_lists_what_was_enqueued", result.stdout)
        report = [line[1:].strip() for line in result.stdout.splitlines()
                  if line.startswith("E ")]
        self.assertEqual(report[0], "AssertionError: Expected a job matching worker=<class "
                                    "'tests.testing_workers.OtherWorker'>, args={'n': 1}, "
                                    "found none.")
        self.assertEqual(report[1], "Enqueued jobs (newest first):")
        self.assertRegex(report[2], r"^#\d+ tests\.testing_workers\.MailerWorker "
                                    r"queue=mailers state=available priority=0 "
                                    r"args=\{'email': 'ada@example\.com'\}$")
        self.assertRegex(report[3], r"^#\d+ tests\.testing_workers\.RecordWorker "
                                    r"queue=testing state=available priority=0 "
                                    r"args=\{'n': 1, 'blob': 'x+\.\.\.$")
        self.assertNotIn("x" * 150, report[3])           # long args are trimmed
        self.assertEqual(len(report), 4)

    def test_importing_testing_mode_adds_no_test(self):
        summary = self.failing.stdout.strip().splitlines()[-1]
        self.assertRegex(summary, r"^=+ 1 failed in [\d.]+s =+$", self.explain(self.failing))

    def test_the_subprocess_used_a_database_of_its_own(self):
        name = subprocess_env()["DJANGO_JOBS_TEST_DB"]
        self.assertNotEqual(name, connection.settings_dict["TEST"]["NAME"])
        self.assertTrue(re.search(r"(-pytest\.sqlite3|_pytest)$", name), name)
        if name.endswith(".sqlite3"):
            self.assertFalse(Path(name).exists())           # pytest-django removed it
