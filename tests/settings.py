"""Settings for the test suite. The database comes from DATABASE_URL (SQLite otherwise)."""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()

SECRET_KEY = "django_jobs-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

_sqlite_file = BASE_DIR / ".db.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{_sqlite_file}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not the in-memory default: tests with several threads or processes need one
    # database that every connection sees. One file per run, so that runs never collide;
    # DJANGO_JOBS_TEST_DB names it (subprocesses started by the tests inherit it).
    DATABASES["default"]["TEST"] = {"NAME": os.environ.setdefault(
        "DJANGO_JOBS_TEST_DB", str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3"))}
else:
    # Likewise one PostgreSQL test database per run unless DJANGO_JOBS_TEST_DB names one.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.setdefault(
        "DJANGO_JOBS_TEST_DB", f"test_django_jobs_{os.getpid()}")}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "tests",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
#: The key of the encrypted-args tests (bytes 0..31, base64); tests/pro_workers.py has it too.
JOBS_TEST_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
DJANGO_JOBS = {"QUEUES": {"default": 10, "mailers": 5}, "ENCRYPTION_KEYS": [JOBS_TEST_KEY]}

# The django.tasks backend (tests/test_tasks.py): Django 6's django.tasks, or the django-tasks
# backport on Django 5.2 when it is installed; without either there is no TASKS setting and
# those tests skip.
try:
    import django.tasks  # noqa: F401
except ImportError:
    try:
        import django_tasks  # noqa: F401
    except ImportError:
        TASKS_MODULE = None
    else:
        TASKS_MODULE = "django_tasks"
        INSTALLED_APPS.append("django_tasks")
else:
    TASKS_MODULE = "django.tasks"
if TASKS_MODULE:
    TASKS = {"default": {"BACKEND": "django_jobs.tasks.JobsBackend",
                         "QUEUES": ["default", "mailers"],
                         "OPTIONS": {"max_attempts": 3}}}
