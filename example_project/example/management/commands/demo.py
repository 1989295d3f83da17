"""``manage.py demo``: create the tables, enqueue some work and show the jobs table.

The steps are methods of :class:`Command` so that each reads on its own: ``migrate``,
``enqueue``, ``summary`` and ``run_jobs``, which runs a node (``runjobs``) in this process
until the demo work is done.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management import BaseCommand, call_command
from django.db import connections, transaction

import django_jobs
from django_jobs import InvalidJobError, fetch_recorded
from django_jobs.conf import jobs_settings
from django_jobs.models import Job, JobState
from example.workers import (AccountWebhook, FlakyWorker, FlashSaleNotifier, InvoiceWorker,
                             MailingBatch, NewsletterMailer, PayoutWorker, ReportWorker,
                             SMSWorker, WelcomeMailer)

#: Jobs of these workers belong to the demo (and are deleted when it starts again).
DEMO_PREFIX = "example.workers."


class RolledBack(Exception):
    """Raised inside a transaction to show that its jobs are rolled back with it."""


class Command(BaseCommand):
    help = "Migrate, enqueue demo jobs, run them with runjobs and print the jobs table."

    def add_arguments(self, parser):
        parser.add_argument(
            "--keep", action="store_true",
            help="Keep the jobs of earlier demo runs (by default they are deleted first).")

    def handle(self, *args: Any, keep: bool = False, **options: Any) -> None:
        self.migrate()
        if not keep:
            self.clear()
        self.enqueue()
        self.summary("3. The jobs table")
        self.run_jobs()

    # -- steps ------------------------------------------------------------------------------

    def migrate(self) -> None:
        alias = jobs_settings.DATABASE
        settings_dict = connections[alias].settings_dict
        self.heading("1. Database")
        self.line(f"{connections[alias].vendor}: {settings_dict['NAME']}")
        out = io.StringIO()
        call_command("migrate", database=alias, interactive=False, verbosity=1, stdout=out)
        applied = sum(1 for line in out.getvalue().splitlines() if "Applying" in line)
        self.line(f"migrate: {applied} migration(s) applied" if applied
                  else "migrate: already up to date")

    def clear(self) -> None:
        deleted, _ = Job.objects.filter(worker__startswith=DEMO_PREFIX).delete()
        if deleted:
            self.line(f"deleted {deleted} job(s) left by an earlier demo run (--keep keeps them)")

    def enqueue(self) -> None:
        self.heading("2. Enqueueing")

        # Single jobs: build and insert in one call.
        job = WelcomeMailer.enqueue({"email": "ada@example.com", "name": "Ada"})
        self.report("enqueue", "WelcomeMailer", job)
        job = ReportWorker.enqueue({"report": "jobs-by-state"})
        self.report("enqueue", "ReportWorker", job)
        for rate in (0.2, 0.5, 0.8):
            job = FlakyWorker.enqueue({"failure_rate": rate}, tags=["demo"])
            self.report("enqueue", "FlakyWorker", job)

        # Many jobs in one statement, in the caller's transaction: they are written together
        # with whatever else the transaction writes, or not at all.
        emails = ["grace@example.com", "alan@example.com", "edsger@example.com",
                  "barbara@example.com"]
        with transaction.atomic():
            jobs = django_jobs.insert_all(
                [NewsletterMailer.new({"email": e, "issue": 42}) for e in emails])
        self.line(f"{'insert_all':<11}{len(jobs)} NewsletterMailer jobs in transaction.atomic()"
                  f" -> {self.ids(jobs)}")

        # The same, rolled back: no job is left behind.
        try:
            with transaction.atomic():
                django_jobs.insert_all(
                    [NewsletterMailer.new({"email": e, "issue": 43}) for e in emails])
                raise RolledBack
        except RolledBack:
            left = Job.objects.filter(worker=NewsletterMailer.worker_path,
                                      args__issue=43).count()
            self.line(f"{'rollback':<11}{len(emails)} NewsletterMailer jobs, then the transaction "
                      f"rolled back -> {left} in the table")

        # A unique job enqueued again: the existing job comes back flagged, nothing is written.
        again = WelcomeMailer.enqueue({"email": "ada@example.com", "name": "Ada Lovelace"})
        self.line(f"{'unique':<11}WelcomeMailer ada@example.com again -> job #{again.pk} "
                  f"returned, conflict={again.conflict}, nothing written")

        # A scheduled job: stored now, due in an hour.
        job = ReportWorker.enqueue({"report": "hourly"}, schedule_in=(1, "hour"))
        self.report("schedule", "ReportWorker", job,
                    f"due {job.scheduled_at:%Y-%m-%d %H:%M:%S} UTC")

        # Bad input is refused when the job is built, before anything is written.
        try:
            FlakyWorker.new({"when": object()})
        except InvalidJobError as exc:
            self.line(f"{'invalid':<11}FlakyWorker.new({{'when': object()}}) -> nothing written:")
            self.line(f"{'':<11}InvalidJobError: {exc}")

        # Structured args are checked against the worker's schema, every field at once.
        try:
            InvoiceWorker.new({"customer_id": 0, "currency": "YEN", "lines": [{"sku": "A"}]})
        except ValidationError as exc:
            self.line(f"{'invalid':<11}InvoiceWorker.new(...) -> nothing written:")
            for message in exc.messages:
                self.line(f"{'':<11}{message}")
        job = InvoiceWorker.enqueue({"customer_id": 7, "lines": [
            {"sku": "book", "quantity": 2, "price": "12.50"}, {"sku": "pen", "price": "1.20"}]})
        self.report("enqueue", "InvoiceWorker", job, "its total is recorded")

        # Encrypted args: the table holds ciphertext only.
        job = PayoutWorker.enqueue({"iban": "DE89370400440532013000", "amount": "120.00"},
                                   meta={"payout_id": 1})
        self.report("enqueue", "PayoutWorker", job, "args encrypted at rest")

        # A chain per account: each account's events run one at a time, in order.
        events = [AccountWebhook.new({"account_id": account, "event": event})
                  for event in ("created", "updated", "deleted") for account in (1, 2)]
        jobs = django_jobs.insert_all(events)
        self.line(f"{'chain':<11}{len(jobs)} AccountWebhook jobs, 2 accounts -> "
                  + ", ".join(f"#{job.pk} {job.state}" for job in jobs))

        # A batch: ten mails as one group; its handlers run once, when all are done.
        jobs = django_jobs.insert_all(MailingBatch.new_batch(
            [{"email": f"reader{i}@example.com", "issue": 7} for i in range(10)],
            batch_callback_args={"mailing": 7}))
        self.line(f"{'batch':<11}{len(jobs)} MailingBatch jobs, batch {jobs[0].meta['batch_id']}")

        # Chunks: 40 texts enqueued one by one, sent to the gateway 10 at a time.
        jobs = django_jobs.insert_all(
            [SMSWorker.new({"to": f"+447000{i:04d}" if i % 15 else f"0{i}", "text": "Hi"})
             for i in range(40)])
        self.line(f"{'chunks':<11}{len(jobs)} SMSWorker jobs, sent in chunks of up to "
                  f"{SMSWorker.size}")

        # A deadline: cancelled, not sent, if it cannot start within the hour.
        job = FlashSaleNotifier.enqueue({"sale": "winter", "email": "ada@example.com"})
        self.report("deadline", "FlashSaleNotifier", job, f"deadline {job.meta['deadline_at']}")

    def summary(self, title: str) -> None:
        """Print the demo's jobs counted by queue and state, then the jobs themselves."""
        self.heading(title)
        jobs = list(Job.objects.filter(worker__startswith=DEMO_PREFIX).order_by("id"))
        counts = Counter((job.queue, job.state) for job in jobs)
        queues = sorted({job.queue for job in jobs})
        states = [s for s in JobState.values if any(counts[q, s] for q in queues)]
        header = ["queue", *states, "total"]
        rows = [[q, *(counts[q, s] for s in states), sum(counts[q, s] for s in states)]
                for q in queues]
        rows.append(["total", *(sum(counts[q, s] for q in queues) for s in states), len(jobs)])
        self.table(header, rows)
        self.stdout.write("")
        self.table(["id", "queue", "state", "prio", "worker", "args"], [
            [job.pk, job.queue, job.state, job.priority, job.worker.removeprefix(DEMO_PREFIX),
             self.short(job.args)] for job in jobs])

    def run_jobs(self) -> None:
        """Run a node in this process until the demo work is done, then show the table again.

        ``runjobs --stop-when-empty`` returns once nothing is available or executing and no
        retry is due within a minute; the job scheduled an hour ahead stays scheduled.
        """
        self.heading("4. Running the jobs: runjobs --stop-when-empty")
        queues = [f"{name}={limit}" for name, limit in jobs_settings.QUEUES.items()]
        args = [arg for queue in queues for arg in ("--queue", queue)]
        call_command("runjobs", *args, "--stop-when-empty", "--grace", "5", verbosity=1)
        self.summary("5. The jobs table after runjobs")
        for job in Job.objects.filter(worker=InvoiceWorker.worker_path, state="completed"):
            self.line(f"recorded result of invoice job #{job.pk}: {fetch_recorded(job)}")
        for job in Job.objects.filter(worker=MailingBatch.worker_path, batch__isnull=True):
            self.line(f"batch callback {job.meta['batch_callback']}: {job.state}")
        texts = Job.objects.filter(worker=SMSWorker.worker_path)
        chunks = Counter(job.attempted_by[2] if len(job.attempted_by or []) > 2 else job.pk
                         for job in texts)  # members name their leader third in attempted_by
        self.line(f"texts: {texts.filter(state='completed').count()} sent, "
                  f"{texts.filter(state='discarded').count()} refused, in {len(chunks)} "
                  f"gateway requests of {sorted(chunks.values(), reverse=True)} texts")
        self.line("")
        self.line("Run `python example_project/manage.py runjobs` to keep a node running, and")
        self.line("`python example_project/manage.py jobs stats` to watch the counts.")

    # -- output -----------------------------------------------------------------------------

    def heading(self, text: str) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"== {text} =="))

    def line(self, text: str) -> None:
        self.stdout.write(f"  {text}")

    def report(self, verb: str, name: str, job: Job, note: str = "") -> None:
        self.line(f"{verb:<11}{name} {self.short(job.args)} -> job #{job.pk} {job.state} "
                  f"in {job.queue}" + (f", {note}" if note else ""))

    def table(self, header: list, rows: list[list]) -> None:
        cells = [[str(c) for c in row] for row in [header, *rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        for row in cells:
            text = "  ".join(c.rjust(w) if c.isdigit() else c.ljust(w)
                             for c, w in zip(row, widths, strict=True))
            self.line(text.rstrip())

    @staticmethod
    def ids(jobs: list[Job]) -> str:
        return ", ".join(f"#{job.pk}" for job in jobs)

    @staticmethod
    def short(value: Any, width: int = 48) -> str:
        text = json.dumps(value, separators=(",", ":"))
        return text if len(text) <= width else text[:width - 3] + "..."
