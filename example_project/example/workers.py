"""The example project's workers.

A worker is a class: its options are class attributes, its work is ``perform(job)``. Jobs store
the worker's dotted path (``example.workers.WelcomeMailer``), so workers live at module level.
"""

import logging
import random
from decimal import Decimal

from django.core.mail import send_mail
from django.db.models import Count

from django_jobs import (BatchWorker, Cancel, ChunkDiscard, ChunkWorker, Snooze, Worker,
                         batch_status)
from django_jobs.models import Job
from django_jobs.pro import structured as s

logger = logging.getLogger("example.workers")


class WelcomeMailer(Worker):
    """Welcomes a new user by mail: at most one mail per address in ten minutes.

    ``unique`` compares only the ``email`` key of the args, so enqueueing the same address again
    (with any name) returns the job already there, flagged ``conflict``, and writes nothing.
    """

    queue = "mailers"
    max_attempts = 3
    tags = ["mail", "welcome"]
    unique = {"period": (10, "minutes"), "keys": ["email"]}
    # This worker was called WelcomeEmail once: jobs stored under that name still run here.
    aliases = ["example.workers.WelcomeEmail"]

    def perform(self, job):
        name = job.args.get("name") or "there"
        send_mail("Welcome!", f"Hello {name}, welcome aboard.", None, [job.args["email"]])


class NewsletterMailer(Worker):
    """Sends one issue of the newsletter to one subscriber."""

    queue = "mailers"
    priority = 5  # after the welcome mails (0 is the highest priority)
    tags = ["mail", "newsletter"]

    def perform(self, job):
        send_mail(f"Newsletter #{job.args['issue']}", "This week: background jobs.", None,
                  [job.args["email"]])


class ReportWorker(Worker):
    """Counts jobs by state: a report built from the database, returned as the job's result."""

    queue = "default"
    priority = 1
    max_attempts = 5

    def perform(self, job):
        rows = Job.objects.values("state").annotate(n=Count("id")).order_by("state")
        return {row["state"]: row["n"] for row in rows}

    def timeout(self, job):
        return 60  # seconds; a report taking longer fails the attempt


class FlakyWorker(Worker):
    """Fails at random, to show retries: ``failure_rate`` of its attempts raise.

    A raised exception fails the attempt; the job is retried after ``backoff`` seconds until it
    has used ``max_attempts``, then discarded.
    """

    max_attempts = 5
    tags = ["flaky"]

    def perform(self, job):
        if random.random() < job.args.get("failure_rate", 0.5):
            raise RuntimeError(f"flaky failure on attempt {job.attempt}")
        return "ok"

    def backoff(self, job):
        return job.attempt  # seconds: quick retries for the demo


class ExportWorker(Worker):
    """Always fails: the export server it calls does not exist. After ``max_attempts`` failed
    attempts the job is discarded; each attempt's traceback stays on the job (the admin's job
    page lists them), and a retry from the admin gives it one more attempt."""

    max_attempts = 2
    tags = ["export"]

    def perform(self, job):
        raise ConnectionError(f"export server {job.args['server']} is unreachable")

    def backoff(self, job):
        return 1


class PartnerSync(Worker):
    """Fails its first attempt and backs off for ten minutes: the job stays ``retryable``,
    with the traceback of its failed attempt, until then (or until "Run now" in the admin)."""

    max_attempts = 3
    tags = ["partner"]

    def perform(self, job):
        if job.attempt == 1:
            raise TimeoutError(f"partner {job.args['partner']} did not answer in time")
        return {"synced": job.args["partner"]}

    def backoff(self, job):
        return 600


class RateLimitedFetch(Worker):
    """Snoozes while a (pretend) rate limit is hit: ``Snooze(1)`` puts the job back for a
    second without counting a failure; ``meta["snoozed"]`` counts the snoozes."""

    tags = ["snooze"]

    def perform(self, job):
        if job.meta.get("snoozed", 0) < job.args.get("snoozes", 2):
            return Snooze(1)
        return "fetched"


class WarmCaches(Worker):
    """Run by the ``@reboot`` cron entry of the settings: once each time the cluster starts."""

    def perform(self, job):
        logger.info("caches warmed (cron entry %s)", job.meta.get("cron_name"))


class Audit:
    """A hook class: logs the end of every job of the workers that list it."""

    def after_process(self, state, job, result):
        logger.info("audit: job %s (%s) ended %s", job.pk, job.worker, state)


class Line:
    sku = s.Str(required=True)
    quantity = s.Int(default=1)
    price = s.Decimal(required=True)


class InvoiceWorker(Worker):
    """Structured args, a recorded result and hooks together.

    The args are checked when the job is built (``InvoiceWorker.new({"customer_id": 0})``
    raises a ``ValidationError`` naming each bad field) and reach ``perform`` typed:
    ``job.args.lines[0].price`` is a ``Decimal``. The total is recorded with the job
    (``django_jobs.fetch_recorded(job)``), and shown on its admin page.
    """

    queue = "default"
    recorded = True
    hooks = [Audit]

    class Args:
        customer_id = s.ID(required=True)
        currency = s.Enum(["EUR", "USD", "GBP"], default="EUR")
        lines = s.Many(Line, required=True)
        due = s.Date()

    def before_process(self, job):
        if not job.args.lines:
            return Cancel("an invoice needs at least one line")

    def perform(self, job):
        total = sum((line.price * line.quantity for line in job.args.lines), Decimal("0"))
        return {"customer_id": job.args.customer_id, "currency": job.args.currency,
                "total": total}


class PayoutWorker(Worker):
    """Encrypted args: the IBAN is sealed with AES-256-GCM before it is written (keys in
    ``DJANGO_JOBS["ENCRYPTION_KEYS"]``), opened only for ``perform``; the admin shows the key
    id, never the args. Unique per payout id, kept in the plain meta."""

    queue = "default"
    encrypted = True
    unique = {"fields": ["worker", "meta"], "keys": ["payout_id"], "period": "infinity"}

    def perform(self, job):
        iban = job.args["iban"]
        logger.info("paid out %s to an account ending %s", job.args["amount"], iban[-4:])


class AccountWebhook(Worker):
    """A chain per account: the events of one account go out one at a time, in the order they
    were enqueued, whatever retries happen; different accounts go out in parallel. A discarded
    event holds its account's chain until someone retries or deletes it (``manage.py jobs
    chains --held`` lists them)."""

    queue = "default"
    max_attempts = 3
    chain = {"by": {"args": "account_id"}, "on_discarded": "hold"}

    def perform(self, job):
        logger.info("webhook %s for account %s", job.args["event"], job.args["account_id"])

    def backoff(self, job):
        return 1


class FlashSaleNotifier(Worker):
    """A deadline: the notice is cancelled instead of sent once the sale is over (an hour after
    the job's scheduled time)."""

    queue = "mailers"
    deadline = (1, "hour")

    def perform(self, job):
        logger.info("flash sale %s announced to %s", job.args["sale"], job.args["email"])


class MailingBatch(BatchWorker):
    """A mailing as one batch: each member sends one issue; the handlers run once when the
    whole batch completed, and when it is over whatever happened (see docs/batches.md)."""

    queue = "mailers"
    max_attempts = 3

    def process(self, job):
        send_mail(f"Issue #{job.args['issue']}", "This week: batches.", None,
                  [job.args["email"]])

    def handle_completed(self, job):
        logger.info("mailing %s: every mail sent", job.args["mailing"])

    def handle_exhausted(self, job):
        status = batch_status(job.meta["batch_id"])
        logger.info("mailing %s over: %s", job.args["mailing"], status.counts)
        return status.counts


def send_sms_batch(messages: list[tuple[str, str]]) -> list[bool]:
    """A stand-in for an SMS gateway's bulk endpoint: one call for many messages; numbers
    that do not start with + are refused."""
    logger.info("SMS gateway: one request for %s messages", len(messages))
    return [to.startswith("+") for to, _ in messages]


class SMSWorker(ChunkWorker):
    """A chunk worker: texts are enqueued one by one and sent to the gateway in groups of up
    to 10 (or whatever arrived within 2 seconds); refused numbers are discarded, each job
    keeping its own state (see docs/chunks.md)."""

    queue = "sms"
    size = 10
    gather_timeout = 2

    def process(self, jobs):
        accepted = send_sms_batch([(job.args["to"], job.args["text"]) for job in jobs])
        refused = [job for job, ok in zip(jobs, accepted, strict=True) if not ok]
        if refused:
            return ChunkDiscard("the gateway refused the number", refused)
