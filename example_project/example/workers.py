"""The example project's workers.

A worker is a class: its options are class attributes, its work is ``perform(job)``. Jobs store
the worker's dotted path (``example.workers.WelcomeMailer``), so workers live at module level.
"""

import random

from django.core.mail import send_mail
from django.db.models import Count

from django_jobs import Worker
from django_jobs.models import Job


class WelcomeMailer(Worker):
    """Welcomes a new user by mail: at most one mail per address in ten minutes.

    ``unique`` compares only the ``email`` key of the args, so enqueueing the same address again
    (with any name) returns the job already there, flagged ``conflict``, and writes nothing.
    """

    queue = "mailers"
    max_attempts = 3
    tags = ["mail", "welcome"]
    unique = {"period": (10, "minutes"), "keys": ["email"]}

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
        return 2 * job.attempt  # seconds: quick retries for the demo
