#!/usr/bin/env python
"""Run the test suite: SQLite by default, PostgreSQL when DATABASE_URL is set.

    python runtests.py                      # everything
    python runtests.py tests.test_unique    # one module (any unittest label)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python runtests.py
"""

import os
import sys


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import django
    from django.conf import settings
    from django.test.utils import get_runner

    django.setup()
    runner_class = get_runner(settings)

    class Runner(runner_class):
        def suite_result(self, suite, result, **kwargs):
            failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
            skipped = len(result.skipped)
            passed = result.testsRun - failed - skipped
            vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
            print(f"\n{vendor}: {passed} passed, {failed} failed, {skipped} skipped")
            return super().suite_result(suite, result, **kwargs)

    labels = [a for a in sys.argv[1:] if not a.startswith("-")]
    failfast = "--failfast" in sys.argv
    verbosity = 2 if "-v" in sys.argv else 1
    runner = Runner(verbosity=verbosity, failfast=failfast, interactive=False)
    failures = runner.run_tests(labels or ["tests"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
