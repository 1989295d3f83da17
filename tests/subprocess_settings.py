"""Settings for ``runjobs`` processes started by the survival tests (tests/test_survival.py).

Everything comes from tests.settings; only the database name changes, to the *test* database
of the running test process (DJANGO_JOBS_TEST_DB, inherited from it): the SQLite file, or the
PostgreSQL database of that name. The child then sees the rows the test writes.
"""

import os

from .settings import *  # noqa: F403
from .settings import DATABASES

DATABASES["default"]["NAME"] = os.environ["DJANGO_JOBS_TEST_DB"]
