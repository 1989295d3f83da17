"""``register_engine``: a third-party engine (here a tiny subclass of ours) registered for the
vendor of this test run serves ``get_engine`` and the door, and passes the engine contract
suite (:mod:`django_jobs.contract`), run whole against it.
"""

import unittest

from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase

from django_jobs.contract import contract_tests
from django_jobs.engines import ENGINES, get_engine, register_engine
from django_jobs.engines.postgresql import PostgreSQLEngine
from django_jobs.engines.sqlite import SQLiteEngine
from django_jobs.exceptions import ConfigurationError
from django_jobs.transitions import transition

from . import contract_engines
from .contract_engines import BY_VENDOR, CountingPostgreSQLEngine, CountingSQLiteEngine
from .workers import NoopWorker

VENDOR = connection.vendor
COUNTING = {"sqlite": CountingSQLiteEngine, "postgresql": CountingPostgreSQLEngine}[VENDOR]
OURS = {"sqlite": SQLiteEngine, "postgresql": PostgreSQLEngine}[VENDOR]


class RegisterEngineTests(SimpleTestCase):
    def setUp(self):
        registered = dict(ENGINES)
        self.addCleanup(lambda: (ENGINES.clear(), ENGINES.update(registered)))

    def test_bad_paths_are_refused_with_the_fix_named(self):
        cases = {
            "nodots": "is not a dotted path to an engine class",
            "tests.nowhere.Engine": "cannot import 'tests.nowhere.Engine'",
            "django_jobs.models.Job": "is not a subclass of django_jobs.engines.base.Engine",
            "django_jobs.engines.base.Engine": "is abstract: implement fetch_statement, "
                                               "serialize",
            "tests.contract_engines.Unfinished": "is abstract: implement fetch_statement, "
                                                 "serialize",
            "tests.contract_engines.Elsewhere": "serves vendor 'elsewhere', not 'sqlite'",
        }
        for path, message in cases.items():
            with self.subTest(path=path):
                with self.assertRaisesMessage(ConfigurationError, message):
                    register_engine("sqlite", path)
        with self.assertRaisesMessage(ConfigurationError, "vendor must be a connection.vendor"):
            register_engine("", BY_VENDOR["sqlite"])
        with self.assertRaisesMessage(ConfigurationError, "is not a dotted path"):
            register_engine("sqlite", CountingSQLiteEngine)
        # A refused registration changes nothing.
        self.assertEqual(ENGINES["sqlite"], "django_jobs.engines.sqlite.SQLiteEngine")

    def test_a_new_vendor_is_added_and_removed(self):
        self.assertIsNone(register_engine("elsewhere", "tests.contract_engines.Elsewhere"))
        self.assertEqual(ENGINES["elsewhere"], "tests.contract_engines.Elsewhere")
        self.assertEqual(register_engine("elsewhere", None), "tests.contract_engines.Elsewhere")
        self.assertNotIn("elsewhere", ENGINES)
        self.assertIsNone(register_engine("elsewhere", None))


class RegisteredEngineTests(TransactionTestCase):
    def test_it_serves_get_engine_inserts_and_the_door_until_put_back(self):
        self.assertIs(type(get_engine()), OURS)
        previous = register_engine(VENDOR, BY_VENDOR[VENDOR])
        self.addCleanup(register_engine, VENDOR, previous)  # if an assertion fails first
        self.assertEqual(previous, f"{OURS.__module__}.{OURS.__qualname__}")
        self.assertIs(type(get_engine()), COUNTING)
        contract_engines.calls.clear()
        job = NoopWorker.enqueue({"n": 1}, queue="registered")
        self.assertEqual(transition([job.pk], "cancelled", only_from=["available"]), 1)
        self.assertEqual(contract_engines.calls["insert_jobs"], 1)
        self.assertEqual(contract_engines.calls["update_jobs"], 1)
        self.assertEqual(register_engine(VENDOR, previous), BY_VENDOR[VENDOR])
        self.assertIs(type(get_engine()), OURS)


class ContractOnARegisteredEngineTests(TransactionTestCase):
    """The whole contract suite, run here (a nested unittest run) with a counting subclass of
    our engine registered for this run's database, then our engine put back."""

    def test_the_contract_suite_passes_on_the_registered_engine(self):
        previous = register_engine(VENDOR, BY_VENDOR[VENDOR])
        self.addCleanup(register_engine, VENDOR, previous)
        contract_engines.calls.clear()
        loader = unittest.TestLoader()
        suite = unittest.TestSuite(loader.loadTestsFromTestCase(case)
                                   for case in contract_tests())
        result = unittest.TestResult()
        suite.run(result)
        problems = "\n".join(f"{test.id()}:\n{trace}"
                             for test, trace in [*result.failures, *result.errors])
        self.assertEqual(problems, "")
        self.assertTrue(result.wasSuccessful())
        expected = sum(case_count(case) for case in contract_tests())
        self.assertEqual(result.testsRun, expected)
        # Only tests of what this database cannot do skipped themselves, saying so.
        reasons = [reason for _, reason in result.skipped]
        self.assertTrue(all(reason.startswith(f"{VENDOR}") for reason in reasons), reasons)
        self.assertLess(len(reasons), 5, reasons)
        # The suite ran against the registered engine: every counted method was called on it.
        self.assertEqual({name for name, count in contract_engines.calls.items() if count},
                         set(contract_engines.COUNTED))
        self.assertIs(type(get_engine()), COUNTING)


def case_count(case) -> int:
    return unittest.TestLoader().loadTestsFromTestCase(case).countTestCases()
