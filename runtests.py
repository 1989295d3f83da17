#!/usr/bin/env python
"""Run the test suite: SQLite by default, PostgreSQL when DATABASE_URL is set.

    python runtests.py                      # everything
    python runtests.py tests.test_unique    # one module (any unittest label)
    python runtests.py --durations 20       # then list the 20 slowest tests
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python runtests.py

Options: -v (verbose), --failfast, --durations N.
"""

import argparse
import os
import sys
import time
import unittest


class TimedResult(unittest.TextTestResult):
    """Records how long each test took (setUp and tearDown included; setUpClass not)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timings: list[tuple[float, str]] = []

    def startTest(self, test):
        self._started = time.perf_counter()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.timings.append((time.perf_counter() - self._started, test.id()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("labels", nargs="*", default=["tests"])
    parser.add_argument("-v", dest="verbosity", action="store_const", const=2, default=1)
    parser.add_argument("--failfast", action="store_true")
    parser.add_argument("--durations", type=int, default=0, metavar="N",
                        help="list the N slowest tests at the end")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import django
    from django.conf import settings
    from django.test.utils import get_runner

    django.setup()

    class Runner(get_runner(settings)):
        def get_resultclass(self):
            return TimedResult

        def suite_result(self, suite, result, **kwargs):
            failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
            skipped = len(result.skipped)
            passed = result.testsRun - failed - skipped
            vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
            if args.durations:
                print(f"\nSlowest {args.durations} tests:")
                for seconds, test in sorted(result.timings, reverse=True)[:args.durations]:
                    print(f"{seconds:8.2f} s  {test}")
            print(f"\n{vendor}: {passed} passed, {failed} failed, {skipped} skipped")
            return super().suite_result(suite, result, **kwargs)

    runner = Runner(verbosity=args.verbosity, failfast=args.failfast, interactive=False)
    failures = runner.run_tests(args.labels)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
