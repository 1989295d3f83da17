"""The README's first command, as a user runs it: ``example_project/manage.py demo`` in a child
process, on a SQLite file of its own (whatever database the suite runs on), with no stdin and
its output not a terminal (as in CI).

Run twice on one database: the first run creates the demo superuser and prints its password;
the second says the user exists and leaves it alone.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import SimpleTestCase

from .processes import REPO, run_python

#: A demo run takes a few seconds (its retries back off by 1 s); this only catches a hang.
DEMO_TIMEOUT = 180.0
PASSWORD = re.compile(r"log in as 'demo', password (\S+) ")


class DemoCommandTests(SimpleTestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="django_jobs-demo-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.db = self.tmp / "demo.sqlite3"

    def demo(self, database_url: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env.update(DATABASE_URL=database_url or f"sqlite:///{self.db}",
                   VAR_DIR=str(self.tmp / "var"),
                   PYTHONPATH=os.pathsep.join(p for p in [str(REPO),
                                                          os.environ.get("PYTHONPATH")] if p),
                   PYTHONUNBUFFERED="1")
        done = run_python(["example_project/manage.py", "demo"], timeout=DEMO_TIMEOUT, env=env)
        self.assertEqual(done.returncode, 0, f"demo failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def rows(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql, params).fetchall()

    def test_demo_shows_every_feature_then_how_to_open_the_admin(self):
        out = self.demo()

        # Progress while runjobs works: plain lines (not a terminal), no mail on the screen.
        self.assertRegex(out, r"\n  (\d+)/\1 jobs done \(")
        self.assertNotIn("\r", out)
        self.assertNotIn("Content-Type:", out)
        self.assertTrue(any((self.tmp / "var" / "mail").glob("*.log")), "no mail file written")
        log = (self.tmp / "var" / "demo.log").read_text()
        self.assertIn("django_jobs.executor: job", log)  # runjobs' log went to its file

        # The summary table: one row per worker, a column per state.
        summary = out.split("== 4. Summary ==")[1].split("== 5.")[0]
        self.assertRegex(summary, r"worker +shows +completed +discarded +cancelled")
        for worker in ("ExportWorker", "MailingBatch", "SMSWorker", "AccountWebhook",
                       "InvoiceWorker", "PayoutWorker", "RateLimitedFetch", "WarmCaches"):
            self.assertRegex(summary, rf"\n  {worker} ")
        self.assertIn("chain      account 1 ran created -> updated -> deleted", summary)
        self.assertIn("recorded   invoice #", summary)
        self.assertIn('"total":"26.20"', summary)
        self.assertRegex(summary, r"batch      10 of 10 completed; callbacks handle_completed "
                                  r"#\d+ completed, handle_exhausted #\d+ completed")
        self.assertRegex(out, r"@task +send_receipt (skipped \(needs|enqueued)")

        # What the admin will show: completed work, a batch with its callbacks, a chain, a
        # chunk, failed jobs with their tracebacks, cron entries and a cron job.
        states = dict(self.rows("SELECT state, count(*) FROM django_jobs_job GROUP BY state"))
        self.assertGreaterEqual(states.get("completed", 0), 50, states)
        export = self.rows("SELECT state, errors FROM django_jobs_job "
                           "WHERE worker = 'example.workers.ExportWorker'")
        self.assertEqual([state for state, _ in export], ["discarded"])
        errors = json.loads(export[0][1])
        self.assertEqual(len(errors), 2)
        self.assertIn("Traceback (most recent call last)", errors[-1]["error"])
        self.assertEqual(self.rows("SELECT state FROM django_jobs_job "
                                   "WHERE worker = 'example.workers.PartnerSync'"),
                         [("retryable",)])
        self.assertEqual(self.rows("SELECT state FROM django_jobs_job "
                                   "WHERE worker = 'example.workers.WarmCaches'"),
                         [("completed",)])
        self.assertEqual(self.rows("SELECT expression FROM django_jobs_cron "
                                   "WHERE name = 'weekly-digest'"), [("0 8 * * MON",)])
        self.assertEqual(self.rows("SELECT count(*) FROM django_jobs_batch"), [(1,)])

        # How to open the admin: the command, the URL, a superuser and its password.
        admin = out.split("== 5. See it in the admin ==")[1]
        self.assertIn("example_project/manage.py runserver", admin)
        self.assertIn("http://127.0.0.1:8000/admin/django_jobs/job/", admin)
        password = PASSWORD.search(admin)
        self.assertIsNotNone(password, admin)
        [(encoded, is_superuser)] = self.rows(
            "SELECT password, is_superuser FROM auth_user WHERE username = 'demo'")
        self.assertTrue(is_superuser)
        self.assertTrue(PBKDF2PasswordHasher().verify(password[1], encoded))

        # A second run: the user is there; it is neither re-created nor given a new password.
        again = self.demo()
        self.assertNotRegex(again, PASSWORD)
        self.assertIn("'demo': that user exists already and its password is unchanged", again)
        self.assertIn("example_project/manage.py changepassword demo", again)
        self.assertEqual(self.rows("SELECT password FROM auth_user WHERE username = 'demo'"),
                         [(encoded,)])
        self.assertRegex(again, r"deleted \d+ job\(s\) left by an earlier demo run")

    def test_demo_on_postgresql(self):
        """When the suite runs on PostgreSQL, the demo runs on a database of its own there."""
        database = settings.DATABASES["default"]
        if not database["ENGINE"].endswith("postgresql"):
            self.skipTest("the suite runs on SQLite (DATABASE_URL=postgres://... for this one)")
        import psycopg

        name = f"django_jobs_demo_{os.getpid()}"
        server = {"host": database["HOST"] or None, "port": database["PORT"] or None,
                  "user": database["USER"] or None, "password": database["PASSWORD"] or None}
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        self.addCleanup(self.drop_database, name, server)
        url = (f"postgres://{quote(database['USER'] or '')}:{quote(database['PASSWORD'] or '')}@"
               f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{name}")

        out = self.demo(url)

        self.assertIn("== 1. Database ==\n  postgresql: ", out)
        self.assertRegex(out, r"\n  (\d+)/\1 jobs done \(")
        self.assertRegex(out, r"batch      10 of 10 completed; callbacks handle_completed "
                              r"#\d+ completed, handle_exhausted #\d+ completed")
        password = PASSWORD.search(out)
        self.assertIsNotNone(password, out)
        with psycopg.connect(dbname=name, **server) as db:
            [(encoded,)] = db.execute("SELECT password FROM auth_user WHERE username = 'demo' "
                                      "AND is_superuser").fetchall()
            states = dict(db.execute("SELECT worker, state FROM django_jobs_job WHERE worker "
                                     "IN ('example.workers.ExportWorker', "
                                     "'example.workers.PartnerSync')").fetchall())
        self.assertTrue(PBKDF2PasswordHasher().verify(password[1], encoded))
        self.assertEqual(states, {"example.workers.ExportWorker": "discarded",
                                  "example.workers.PartnerSync": "retryable"})

    @staticmethod
    def drop_database(name: str, server: dict) -> None:
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
