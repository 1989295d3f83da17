"""Settings for processes the benchmarks start with ``python -m django`` (bench/run.py's
``runjobs``). The database URL comes from ``BENCH_DATABASE_URL``, configured as
:func:`bench.common.database_config` does for the benchmark itself."""

import os

from bench.common import INSTALLED_APPS, database_config

SECRET_KEY = "django_jobs-bench-only"
DATABASES = {"default": database_config(os.environ["BENCH_DATABASE_URL"])}
INSTALLED_APPS = INSTALLED_APPS
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
