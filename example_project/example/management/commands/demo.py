"""``manage.py demo``: enqueue a bit of every feature, run it with ``runjobs``, then say how to
see it all in the admin.

The steps are methods of :class:`Command`, each readable on its own: ``migrate``, ``enqueue``,
``run_jobs`` (``runjobs --stop-when-empty`` in this process, its progress on one line and its
log in a file), ``summary`` and ``highlights``, and ``admin_access`` (a superuser created on
the first run, and the ``runserver`` command to type). Nothing asks for input; the run is
bounded by ``--time-limit``.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import secrets
import shlex
import signal
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import BaseCommand, call_command
from django.db import connections, transaction
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobError, batch_status, fetch_recorded
from django_jobs.conf import jobs_settings
from django_jobs.models import CronEntry, Job, JobState
from example import tasks
from example.progress import ProgressWatcher
from example.workers import (AccountWebhook, ExportWorker, FlakyWorker, FlashSaleNotifier,
                             InvoiceWorker, MailingBatch, NewsletterMailer, PartnerSync,
                             PayoutWorker, RateLimitedFetch, ReportWorker, SMSWorker,
                             WelcomeMailer)

#: Jobs of these workers belong to the demo (and are deleted when it starts again).
DEMO_PREFIX = "example.workers."
#: The superuser the demo creates to log in to the admin.
DEMO_USER = "demo"
#: What each worker of the summary table shows.
SHOWS = {
    "WelcomeMailer": "unique jobs",
    "NewsletterMailer": "insert_all in a transaction",
    "ReportWorker": "result; one scheduled in 1 h",
    "FlakyWorker": "retries with backoff",
    "ExportWorker": "failures: discarded, tracebacks",
    "PartnerSync": "failure: retryable in 10 min",
    "RateLimitedFetch": "Snooze",
    "InvoiceWorker": "structured, recorded, hooks",
    "PayoutWorker": "encrypted args",
    "AccountWebhook": "chains",
    "FlashSaleNotifier": "deadlines",
    "MailingBatch": "batch and its callbacks",
    "SMSWorker": "chunks",
    "WarmCaches": "cron @reboot",
}

#: The summary's columns, in this order (those with no job are left out).
STATE_ORDER = [JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED, JobState.RETRYABLE,
               JobState.SCHEDULED, JobState.AVAILABLE, JobState.EXECUTING, JobState.SUSPENDED]


class RolledBack(Exception):
    """Raised inside a transaction to show that its jobs are rolled back with it."""


class Command(BaseCommand):
    help = ("Enqueue a bit of every feature, run it with runjobs (progress on one line), print "
            "a summary and how to open the admin.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--keep", action="store_true",
            help="Keep the jobs of earlier demo runs (by default they are deleted first).")
        parser.add_argument(
            "--time-limit", type=float, default=60.0, metavar="SECONDS",
            help="Stop runjobs after this many seconds even if jobs are left (default 60).")

    def handle(self, *args: Any, keep: bool = False, time_limit: float = 60.0,
               **options: Any) -> None:
        self.var_dir = Path(settings.VAR_DIR)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.migrate()
        if not keep:
            self.clear()
        self.enqueue()
        self.run_jobs(time_limit)
        self.summary()
        self.highlights()
        self.admin_access()

    # -- steps ------------------------------------------------------------------------------

    def migrate(self) -> None:
        alias = jobs_settings.DATABASE
        self.heading("1. Database")
        self.line(f"{connections[alias].vendor}: {connections[alias].settings_dict['NAME']}")
        out = io.StringIO()
        call_command("migrate", interactive=False, verbosity=1, stdout=out)
        applied = sum(1 for line in out.getvalue().splitlines() if "Applying" in line)
        self.line(f"migrate: {applied} migration(s) applied" if applied
                  else "migrate: already up to date")

    def clear(self) -> None:
        """Delete what an earlier demo run left: its jobs, and its mail files."""
        deleted, _ = Job.objects.filter(worker__startswith=DEMO_PREFIX).delete()
        if deleted:
            self.line(f"deleted {deleted} job(s) left by an earlier demo run (--keep keeps them)")
        mail_dir = self.mail_dir()
        if mail_dir is not None:
            for path in mail_dir.glob("*.log"):
                path.unlink()

    def enqueue(self) -> None:
        self.heading("2. Enqueueing")
        now = timezone.now()

        # Single jobs: build and insert in one call.
        self.report("enqueue", WelcomeMailer.enqueue({"email": "ada@example.com",
                                                      "name": "Ada"}))
        self.report("enqueue", ReportWorker.enqueue({"report": "jobs-by-state"}))

        # Many jobs in one statement, in the caller's transaction: they are written together
        # with whatever else the transaction writes, or not at all.
        emails = ["grace@example.com", "alan@example.com", "edsger@example.com"]
        with transaction.atomic():
            jobs = django_jobs.insert_all(
                [NewsletterMailer.new({"email": e, "issue": 42}) for e in emails])
        self.line("insert_all", f"{len(jobs)} NewsletterMailer jobs in one transaction")
        try:
            with transaction.atomic():
                django_jobs.insert_all(
                    [NewsletterMailer.new({"email": e, "issue": 43}) for e in emails])
                raise RolledBack
        except RolledBack:
            left = Job.objects.filter(worker=NewsletterMailer.worker_path,
                                      args__issue=43).count()
            self.line("rollback", f"{len(emails)} more, rolled back with their transaction -> "
                                  f"{left} in the table")

        # A unique job enqueued again: the existing job comes back flagged, nothing is written.
        again = WelcomeMailer.enqueue({"email": "ada@example.com", "name": "Ada Lovelace"})
        self.line("unique", f"WelcomeMailer for ada@example.com again -> job #{again.pk} "
                            f"returned, conflict={again.conflict}")

        # Scheduled: stored now, due in an hour (runjobs --stop-when-empty does not wait).
        self.report("schedule", ReportWorker.enqueue({"report": "hourly"},
                                                     schedule_in=(1, "hour")), "due in 1 hour")

        # Retries and failures: random, always, and once with a long backoff.
        for rate in (0.3, 0.6):
            self.report("retries", FlakyWorker.enqueue({"failure_rate": rate}))
        self.report("failure", ExportWorker.enqueue({"server": "export.invalid"}),
                    "always fails")
        self.report("failure", PartnerSync.enqueue({"partner": "acme"}),
                    "fails once, retries in 10 min")
        self.report("snooze", RateLimitedFetch.enqueue({"url": "/rates", "snoozes": 2}))

        # Bad input is refused when the job is built, before anything is written.
        try:
            FlakyWorker.new({"when": object()})
        except InvalidJobError as exc:
            self.line("invalid", f"FlakyWorker.new(...) -> InvalidJobError: {exc}")
        try:
            InvoiceWorker.new({"customer_id": 0, "currency": "YEN", "lines": [{"sku": "A"}]})
        except ValidationError as exc:
            self.line("invalid", f"InvoiceWorker.new(...) -> {'; '.join(exc.messages)}")

        # Structured args, a recorded result and hooks; a before_process hook cancels an
        # invoice without lines.
        self.invoice = InvoiceWorker.enqueue({"customer_id": 7, "lines": [
            {"sku": "book", "quantity": 2, "price": "12.50"}, {"sku": "pen", "price": "1.20"}]})
        self.report("structured", self.invoice, "its total is recorded")
        self.report("hook", InvoiceWorker.enqueue({"customer_id": 8, "lines": []}),
                    "no lines: a hook cancels it")

        # Encrypted args: the table holds ciphertext only.
        self.payout = PayoutWorker.enqueue(
            {"iban": "DE89370400440532013000", "amount": "120.00"}, meta={"payout_id": 1})
        self.report("encrypted", self.payout)

        # A deadline: a notice that cannot start within an hour of its time is cancelled.
        self.report("deadline", FlashSaleNotifier.enqueue(
            {"sale": "winter", "email": "ada@example.com"}), "deadline in 1 hour")
        self.report("deadline", FlashSaleNotifier.enqueue(
            {"sale": "autumn", "email": "ada@example.com"},
            scheduled_at=now - datetime.timedelta(hours=2)), "deadline passed: cancelled")

        # A chain per account: each account's events run one at a time, in order.
        jobs = django_jobs.insert_all([AccountWebhook.new({"account_id": account, "event": event})
                                       for event in ("created", "updated", "deleted")
                                       for account in (1, 2)])
        self.line("chain", f"{len(jobs)} AccountWebhook jobs for 2 accounts: "
                  + ", ".join(f"#{job.pk} {job.state}" for job in jobs))

        # A batch: ten mails as one group; its callbacks run once, when all are done.
        jobs = django_jobs.insert_all(MailingBatch.new_batch(
            [{"email": f"reader{i}@example.com", "issue": 7} for i in range(10)],
            batch_callback_args={"mailing": 7}))
        self.batch_id = jobs[0].meta["batch_id"]
        self.line("batch", f"{len(jobs)} MailingBatch jobs, batch {self.batch_id}")

        # Chunks: 30 texts enqueued one by one, sent to the gateway 10 at a time.
        jobs = django_jobs.insert_all(
            [SMSWorker.new({"to": f"+447000{i:04d}" if i % 12 else f"0{i}", "text": "Hi"})
             for i in range(30)])
        self.line("chunks", f"{len(jobs)} SMSWorker jobs, sent in chunks of up to "
                            f"{SMSWorker.size}")

        # Cron: the settings' entries (an @reboot one runs now), and one in the cron table.
        entry, created = CronEntry.objects.get_or_create(
            name="weekly-digest", defaults={
                "expression": "0 8 * * MON", "timezone": "Europe/Paris",
                "worker": NewsletterMailer.worker_path,
                "args": {"email": "team@example.com", "issue": 0}})
        self.cron_entry = entry
        self.line("cron", f"entry {entry.name!r} {entry.expression!r} {entry.timezone} "
                          f"{'added to' if created else 'already in'} the cron table; "
                          f"@reboot and hourly entries in settings")

        # A Django @task function, through django_jobs' django.tasks backend.
        reason = tasks.unavailable_reason()
        self.task_result = None
        if reason:
            self.line("@task", f"send_receipt skipped ({reason})")
        else:
            self.task_result = tasks.send_receipt.enqueue(1, "ada@example.com")
            self.line("@task", f"send_receipt enqueued: {self.task_result.id}")

    def run_jobs(self, time_limit: float) -> None:
        """Run a node (``runjobs --stop-when-empty``) in this process until the demo's work is
        done, its log in a file and its progress on the terminal."""
        self.heading("3. Running them: runjobs --stop-when-empty")
        log_path = self.var_dir / "demo.log"
        self.line(f"runjobs' log: {self.shown_path(log_path)}")
        handler = logging.FileHandler(log_path, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger(name) for name in ("django_jobs", "example")]
        saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
        for lg in loggers:
            lg.handlers, lg.propagate = [handler], False
            lg.setLevel(logging.INFO)
        sigs = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        watcher = ProgressWatcher(self.write, tty=self.stdout.isatty(), time_limit=time_limit,
                                  jobs=lambda: Job.objects.filter(worker__startswith=DEMO_PREFIX))
        watcher.start()
        try:
            queues = [f"{name}={limit}" for name, limit in jobs_settings.QUEUES.items()]
            call_command("runjobs", *(a for q in queues for a in ("--queue", q)),
                         "--stop-when-empty", "--grace", "5", stdout=io.StringIO())
        finally:
            watcher.finish()
            for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
                lg.handlers, lg.propagate = handlers, propagate
                lg.setLevel(level)
            handler.close()
            for signum, previous in sigs.items():  # runjobs set its own
                signal.signal(signum, previous)
        if watcher.timed_out:
            self.line(f"stopped after --time-limit {time_limit:g} s with work left")

    def summary(self) -> None:
        self.heading("4. Summary")
        jobs = list(Job.objects.filter(worker__startswith=DEMO_PREFIX).order_by("id"))
        counts: dict[str, Counter] = defaultdict(Counter)
        for job in jobs:
            counts[job.worker.removeprefix(DEMO_PREFIX)][job.state] += 1
        states = [s for s in STATE_ORDER if any(c[s] for c in counts.values())]
        rows = [[name, SHOWS.get(name, ""), *(c[s] or "" for s in states)]
                for name, c in counts.items()]
        rows.append(["total", "", *(sum(c[s] for c in counts.values()) for s in states)])
        self.table(["worker", "shows", *states], rows)

    def highlights(self) -> None:
        """One line per feature whose outcome the table does not show."""
        self.stdout.write("")
        total = fetch_recorded(Job.objects.get(pk=self.invoice.pk))
        self.line("recorded", f"invoice #{self.invoice.pk}: {self.short(total, 70)}")
        stored = Job.objects.filter(pk=self.payout.pk).values_list("args", flat=True).get()
        self.line("encrypted", f"payout #{self.payout.pk} as stored: {self.short(stored, 60)}")
        status = batch_status(self.batch_id)
        callbacks = Job.objects.filter(meta__batch_id=self.batch_id, meta__has_key="batch_callback")
        self.line("batch", f"{status.counts['completed']} of {status.counts['members']} "
                           f"completed; callbacks "
                  + (", ".join(f"{j.meta['batch_callback']} #{j.pk} {j.state}"
                               for j in callbacks.order_by("id")) or "none yet"))
        order = list(Job.objects.filter(worker=AccountWebhook.worker_path, args__account_id=1,
                                        state=JobState.COMPLETED).order_by("completed_at", "id"))
        self.line("chain", "account 1 ran " + " -> ".join(j.args["event"] for j in order))
        self.chain_job = order[1].pk if len(order) > 1 else None
        texts = Job.objects.filter(worker=SMSWorker.worker_path)
        chunks = Counter(int(job.attempted_by[2]) if len(job.attempted_by or []) > 2 else job.pk
                         for job in texts)  # members name their leader third in attempted_by
        self.chunk_leader = chunks.most_common(1)[0][0] if chunks else None
        self.line("chunks", f"{texts.filter(state='completed').count()} texts sent, "
                            f"{texts.filter(state='discarded').count()} refused, in "
                            f"{len(chunks)} gateway requests")
        reboot = Job.objects.filter(meta__cron_name="warm-caches").order_by("-id").first()
        nxt = self.cron_entry.next_run()
        self.line("cron", (f"@reboot job #{reboot.pk} {reboot.state}" if reboot else
                           "no @reboot job (the cluster had not stopped for a minute)")
                  + f"; {self.cron_entry.name} next runs "
                  + (f"{nxt:%Y-%m-%d %H:%M} UTC" if nxt else "never or at cluster start"))
        flaky = Job.objects.filter(worker=FlakyWorker.worker_path).order_by("id")
        self.line("retries", ", ".join(f"FlakyWorker #{j.pk} {j.state} after {j.attempt} of "
                                       f"{j.max_attempts} attempts" for j in flaky))
        failed = list(Job.objects.filter(worker__in=[ExportWorker.worker_path,
                                                     PartnerSync.worker_path]).order_by("id"))
        self.failed_jobs = {job.worker: job.pk for job in failed}
        for job in failed:
            last = job.errors[-1]["error"].strip().splitlines()[-1] if job.errors else ""
            then = (f", next attempt {job.scheduled_at:%H:%M} UTC"
                    if job.state == JobState.RETRYABLE else "")
            self.line("failed", f"{job.worker.removeprefix(DEMO_PREFIX)} #{job.pk} {job.state} "
                                f"after {job.attempt} attempt(s){then}: {last}")
        if self.task_result is not None:
            self.task_result.refresh()
            self.line("@task", f"send_receipt {self.task_result.status}")
        mail_dir = self.mail_dir()
        if mail_dir is not None:
            # The backend appends the messages of one connection to one file, each with
            # its headers: count the messages, not the files.
            sent = sum(1 for path in mail_dir.glob("*.log")
                       for line in path.read_text(errors="replace").splitlines()
                       if line.startswith("Message-ID: "))
            self.line("mail", f"{sent} messages written to {self.shown_path(mail_dir)}")

    def admin_access(self) -> None:
        """Create the demo superuser if it does not exist, and say how to open the admin."""
        self.heading("5. See it in the admin")
        manage = self.manage_command()
        User = get_user_model()
        if User.objects.filter(**{User.USERNAME_FIELD: DEMO_USER}).exists():
            login = (f"{DEMO_USER!r}: that user exists already and its password is "
                     f"unchanged; set a new one with\n       {manage} changepassword {DEMO_USER}")
        else:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(**{User.USERNAME_FIELD: DEMO_USER},
                                          email="demo@example.com", password=password)
            login = f"{DEMO_USER!r}, password {password} (a superuser created just now)"
        base = "http://127.0.0.1:8000/admin/django_jobs"
        self.line("1. Start the web server:")
        self.line(f"     {manage} runserver")
        self.line(f"2. Open {base}/job/")
        self.line(f"   and log in as {login}")
        self.line("3. Then look at")
        pages = [
            ("a failed job and its tracebacks", self.job_url(
                base, self.failed_jobs.get(ExportWorker.worker_path))),
            ("a job waiting to retry", self.job_url(
                base, self.failed_jobs.get(PartnerSync.worker_path))),
            ("the batch and its callbacks", f"{base}/batch/"),
            ("a job of a chain", self.job_url(base, self.chain_job)),
            ("a chunk of texts",
             self.chunk_leader and f"{base}/job/?q=chunk%3A{self.chunk_leader}"),
            ("a recorded result", self.job_url(base, self.invoice.pk)),
            ("the cron entries", f"{base}/cronentry/"),
            ("the queues", f"{base}/job/queues/"),
            ("the dashboard", f"{base}/job/dashboard/"),
        ]
        for what, url in pages:
            if url:
                self.line(f"     {what:<33}{url}")
        self.line("4. Keep a node running to see cron and retries go on:")
        self.line(f"     {manage} runjobs")

    @staticmethod
    def job_url(base: str, pk: int | None) -> str | None:
        return f"{base}/job/{pk}/change/" if pk else None

    @staticmethod
    def mail_dir() -> Path | None:
        """The folder mail goes to, if it is sent to files (Django's filebased backend)."""
        if settings.EMAIL_BACKEND != "django.core.mail.backends.filebased.EmailBackend":
            return None
        path = Path(settings.EMAIL_FILE_PATH)
        return path if path.is_dir() else None

    # -- output -----------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Raw output, no newline added (the progress line rewrites itself with \\r)."""
        self.stdout.write(text, ending="")
        self.stdout.flush()

    def heading(self, text: str) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"== {text} =="))

    def line(self, label: str, text: str = "") -> None:
        self.stdout.write(f"  {label:<11}{text}".rstrip() if text else f"  {label}")

    def report(self, label: str, job: Job, note: str = "") -> None:
        self.line(label, f"{job.worker.removeprefix(DEMO_PREFIX)} {self.short(job.args)} -> "
                         f"job #{job.pk} {job.state}" + (f", {note}" if note else ""))

    def table(self, header: list, rows: list[list]) -> None:
        cells = [[str(c) for c in row] for row in [header, *rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        for row in cells:
            text = "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            self.line(text.rstrip())

    def manage_command(self) -> str:
        """How to run manage.py as this process was run: this interpreter and manage.py,
        relative to the current directory when below it, with the DATABASE_URL if set."""
        parts = [self.shown_path(Path(sys.executable)),
                 self.shown_path(Path(settings.BASE_DIR) / "manage.py")]
        if os.environ.get("DATABASE_URL"):
            parts.insert(0, f"DATABASE_URL={os.environ['DATABASE_URL']}")
        return " ".join(shlex.quote(part) for part in parts)

    @staticmethod
    def shown_path(path: Path) -> str:
        relative = os.path.relpath(path)
        return str(path) if relative.startswith("..") else relative

    @staticmethod
    def short(value: Any, width: int = 48) -> str:
        text = json.dumps(value, separators=(",", ":"), default=str)
        return text if len(text) <= width else text[:width - 3] + "..."
