"""Settings of the example project, read from the environment with django-environ.

With no environment at all it runs on a SQLite file next to ``manage.py``. Set
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/example`` (any URL django-environ reads) to
run it on PostgreSQL instead. A ``.env`` file beside ``manage.py`` is read if present.

| Variable | Default |
| --- | --- |
| ``DATABASE_URL`` | ``sqlite:///example_project/db.sqlite3`` |
| ``SECRET_KEY`` | a fixed key, for this example only |
| ``DEBUG`` | ``true`` |
| ``ALLOWED_HOSTS`` | ``localhost,127.0.0.1,[::1]`` |
| ``JOBS_ENCRYPTION_KEYS`` | a fixed key, for this example only (comma-separated, newest first) |
| ``EMAIL_BACKEND`` | files in ``EMAIL_FILE_PATH``: ``VAR_DIR/mail/`` |
| ``VAR_DIR`` | ``example_project/var/`` (git ignores it): mail, the demo's log |
"""

from importlib.util import find_spec
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent  # example_project/

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

SECRET_KEY = env("SECRET_KEY", default="django-insecure-example-project-only")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# -- Database -------------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # What django_jobs recommends for SQLite (docs/sqlite.md, check django_jobs.W001):
    # - IMMEDIATE transactions take the write lock at BEGIN, so a web request and runjobs
    #   writing at the same time queue up instead of failing with "database is locked";
    # - timeout: seconds a writer waits for that lock;
    # - WAL: readers never block the writer and the writer never blocks readers.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- django_jobs (docs/settings.md) ----------------------------------------------------------

DJANGO_JOBS = {
    # Queue -> number of jobs run at once by each runjobs process.
    "QUEUES": {"default": 10, "mailers": 20, "sms": 2},
    # Finished jobs are kept for three days, then pruned.
    "PRUNER": {"max_age": 3 * 24 * 3600},
    # Keys for encrypted args (PayoutWorker), newest first: 32 random bytes in base64 each.
    # The default is for this example only; production reads real keys from the environment.
    "ENCRYPTION_KEYS": env.list("JOBS_ENCRYPTION_KEYS",
                                default=["ZXhhbXBsZS1wcm9qZWN0LWtleS1kby1ub3QtdXNlISE="]),
    # Static cron entries (checked by `manage.py check`); the demo adds a dynamic one to the
    # cron table. "@reboot" runs once each time the cluster starts.
    "CRONTAB": [
        ("@reboot", "example.workers.WarmCaches", {"name": "warm-caches"}),
        ("0 * * * *", "example.workers.ReportWorker",
         {"args": {"report": "hourly"}, "name": "hourly-report"}),
    ],
}

# -- The rest -----------------------------------------------------------------------------

USE_TZ = True  # django_jobs requires it (check django_jobs.E005)
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "static/"

# Mail sent by the workers is written to files, one a message, not delivered.
VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = "demo@example.com"

# -- django.tasks -----------------------------------------------------------------------------


def jobs_tasks_backend_available() -> bool:
    """True when ``@task`` functions can run on django_jobs: a ``django.tasks`` (Django 6.0+)
    or the ``django_tasks`` backport is importable, and django_jobs has its backend."""
    has_tasks = any(find_spec(name) is not None for name in ("django.tasks", "django_tasks"))
    return has_tasks and find_spec("django_jobs.tasks") is not None


if jobs_tasks_backend_available():
    # example/tasks.py defines its @task function only when this is set.
    TASKS = {"default": {"BACKEND": "django_jobs.tasks.JobsBackend"}}
