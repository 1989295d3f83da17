"""Settings for ``runjobs`` processes started by the survival tests (tests/test_survival.py).

Everything comes from tests.settings; only the database name changes, to the *test* database
of the running test process (DJANGO_JOBS_TEST_DB, inherited from it): the SQLite file, or the
PostgreSQL database of that name. The child then sees the rows the test writes.

``DJANGO_JOBS_TEST_SETTINGS`` (JSON, optional) replaces keys of ``DJANGO_JOBS``: a test runs a
node with the settings it checks (``RunjobsMixin.start_runjobs(jobs_settings=...)``). JSON
arrays become lists, so a CRONTAB entry is a list.
"""

import json
import os

from .settings import *  # noqa: F403
from .settings import DATABASES, DJANGO_JOBS

DATABASES["default"]["NAME"] = os.environ["DJANGO_JOBS_TEST_DB"]
DJANGO_JOBS = {**DJANGO_JOBS, **json.loads(os.environ.get("DJANGO_JOBS_TEST_SETTINGS", "{}"))}
