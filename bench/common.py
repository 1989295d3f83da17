"""Shared set-up for the benchmarks: a fresh database per engine, Django configured in-process.

Each benchmark runs itself once per engine in a subprocess (Django settings can be configured
only once per process):

* SQLite: a new file in a temporary directory, with the recommended OPTIONS;
* PostgreSQL: the database ``django_jobs_bench`` on ``BENCH_POSTGRES`` (default
  ``postgres://postgres@127.0.0.1:5432/postgres``'s server), created when missing. Skipped with
  a message when the server cannot be reached.
"""

from __future__ import annotations

import json
import shutil
import time
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
PG_DATABASE = "django_jobs_bench"


def database_urls() -> dict[str, str]:
    """The configurations measured. ``postgresql+prepared`` sets psycopg's
    ``prepare_threshold`` to its own default (5) in Django's OPTIONS; Django leaves it off
    (``None``) unless asked, for the sake of pgbouncer's transaction pooling."""
    tmp = tempfile.mkdtemp(prefix="django_jobs_bench_")
    return {"sqlite": f"sqlite:///{tmp}/bench.sqlite3",
            "postgresql": f"{PG_SERVER}/{PG_DATABASE}",
            "postgresql+prepared": f"{PG_SERVER}/{PG_DATABASE}?prepare_threshold=5"}


def ensure_postgres_database() -> str | None:
    """Create the bench database if missing; return an error message if unreachable."""
    try:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3) as c:
            exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               [PG_DATABASE]).fetchone()
            if not exists:
                c.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    except Exception as exc:  # any failure means "no PostgreSQL here"
        return f"{type(exc).__name__}: {exc}"
    return None


#: Apps of every benchmark process.
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_jobs", "bench"]


def database_config(url: str) -> dict:
    """Django's DATABASES entry for a bench URL: the recommended SQLite OPTIONS, and
    ``?prepare_threshold=N`` for psycopg's prepared statements on PostgreSQL."""
    import environ

    url, _, query = url.partition("?")
    database = environ.Env.db_url_config(url)
    if query.startswith("prepare_threshold="):
        database["OPTIONS"] = {"prepare_threshold": int(query.split("=", 1)[1])}
    if database["ENGINE"].endswith("sqlite3"):
        database["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30,
                               "init_command": "PRAGMA journal_mode=WAL; "
                                               "PRAGMA synchronous=NORMAL;"}
    return database


def setup_django(url: str) -> None:
    """Configure Django for ``url`` with django_jobs installed, and migrate."""
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": database_config(url)},
        INSTALLED_APPS=INSTALLED_APPS,
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def truncate_jobs() -> None:
    from django.db import connection

    from django_jobs.models import Job

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE django_jobs_job RESTART IDENTITY")
            cursor.execute("VACUUM ANALYZE django_jobs_job")
        else:
            Job.objects.all().delete()


def run_engines(script: str, argv: list[str]) -> dict[str, dict]:
    """Run ``script --db URL`` for each engine; collect the JSON each prints last."""
    results = {}
    for vendor, url in database_urls().items():
        if vendor.startswith("postgresql"):
            problem = ensure_postgres_database()
            if problem:
                print(f"postgresql: skipped, server not reachable ({problem})")
                continue
        out = subprocess.run([sys.executable, script, "--db", url, *argv], check=True,
                             capture_output=True, text=True, cwd=ROOT)
        results[vendor] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets target" if ok else "BELOW TARGET" if higher_is_better else "ABOVE TARGET"


#: One figure of a report: (key in the results, label, format, target). A target is
#: (goal, higher_is_better), judged on PostgreSQL only (the targets are set for it).
Row = tuple[str, str, str, "tuple[float, bool] | None"]


def print_table(results: dict[str, dict], rows: list[Row], width: int = 48) -> None:
    """Each engine's figures: median, spread (min-max of the runs), target and verdict."""
    header = f"{'engine':<12}{'figure':<{width}}{'median':>10}  {'spread':<18}{'target':<10}verdict"
    print(header)
    print("-" * len(header))
    for vendor, r in results.items():
        for key, label, fmt, target in rows:
            values = r[key]
            value = median(values)
            spread = f"{fmt.format(min(values))}-{fmt.format(max(values))}"
            if target and vendor.startswith("postgresql"):
                goal, higher = target
                ok = value >= goal if higher else value <= goal
                text = f"{'>=' if higher else '<='} {goal:g}"
                verdict = "meets target" if ok else "BELOW TARGET"
            else:
                text, verdict = "(info)" if target else "-", "-"
            print(f"{vendor:<12}{label:<{width}}{fmt.format(value):>10}  {spread:<18}{text:<10}"
                  f"{verdict}")


def measure_engines(script: str, engines: str, argv: list[str]) -> dict[str, dict]:
    """Run ``script --db URL *argv`` in a subprocess per engine of ``engines`` (comma
    separated; PostgreSQL skipped with a message when unreachable), each on a fresh database;
    collect the JSON each prints last. Exits when a run fails."""
    urls = database_urls()
    results = {}
    try:
        for vendor in engines.split(","):
            if vendor.startswith("postgresql") and (problem := ensure_postgres_database()):
                print(f"{vendor}: skipped, server not reachable ({problem})")
                continue
            print(f"measuring {vendor} ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, script, "--db", urls[vendor], *argv],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
            if out.returncode:
                sys.exit(f"{vendor}: failed (see above)")
            results[vendor] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(os.path.dirname(urls["sqlite"].removeprefix("sqlite:///")),
                      ignore_errors=True)
    return results


def load_line(started: float, load: tuple[float, float, float]) -> str:
    """The closing line of a report: time taken and the load average before and after."""
    return (f"total {time.perf_counter() - started:.0f} s; load average (1 min) {load[0]:.2f} "
            f"at start, {os.getloadavg()[0]:.2f} at end, on {os.cpu_count()} cores")


def drain(queues: dict[str, int], name: str, pending_sql: str, limit_s: float) -> float:
    """Start an in-process node on ``queues`` and return the seconds until ``pending_sql``
    (one boolean: is anything left to do?) answers false; fails after ``limit_s``."""
    from django.db import connection

    from django_jobs.runtime.node import Node

    node = Node(queues=queues, name=name, grace=5)
    started = time.perf_counter()
    node.start()
    try:
        while True:
            with connection.cursor() as cursor:
                cursor.execute(pending_sql)
                if not cursor.fetchone()[0]:
                    return time.perf_counter() - started
            if time.perf_counter() - started > limit_s:
                raise RuntimeError(f"run did not finish in {limit_s:.0f} s")
            time.sleep(0.02)
    finally:
        node.stop()


def wait_started(process: subprocess.Popen, log_path: str, timeout: float = 60.0) -> None:
    """Wait until a ``runjobs`` child has logged that it started; fail with its output if it
    exits or takes longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    while "started" not in open(log_path).read():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("runjobs did not start:\n" + open(log_path).read())
        time.sleep(0.05)
