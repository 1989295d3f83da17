"""Settings for processes the benchmarks start with ``python -m django`` (bench/run.py's
``runjobs``). The database URL comes from ``BENCH_DATABASE_URL``; the database configuration
mirrors :func:`bench.common.setup_django` (SQLite OPTIONS, ``?prepare_threshold=N``)."""

import os

import environ

_url, _, _query = os.environ["BENCH_DATABASE_URL"].partition("?")
_database = environ.Env.db_url_config(_url)
if _query.startswith("prepare_threshold="):
    _database["OPTIONS"] = {"prepare_threshold": int(_query.split("=", 1)[1])}
if _database["ENGINE"].endswith("sqlite3"):
    _database["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30,
                            "init_command": "PRAGMA journal_mode=WAL; "
                                            "PRAGMA synchronous=NORMAL;"}

SECRET_KEY = "django_jobs-bench-only"
DATABASES = {"default": _database}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_jobs", "bench"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
