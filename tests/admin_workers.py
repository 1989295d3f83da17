"""Fixture workers and helpers for the admin tests (tests/test_admin*.py)."""

from __future__ import annotations

import datetime
import uuid

from django.contrib.auth.models import Permission, User
from django.utils import timezone

import django_jobs
from django_jobs import ChunkWorker, Worker
from django_jobs.models import Job, Producer


class ReportWorker(Worker):
    queue = "default"
    max_attempts = 3
    tags = ["reports"]

    def perform(self, job):
        return job.args.get("day")


class MailWorker(Worker):
    queue = "mailers"
    priority = 2
    tags = ["email"]

    def perform(self, job):
        return job.args.get("email")


class AdminRetryWorker(Worker):
    """Succeeds: a discarded job of it, retried in the admin, completes on a node."""

    queue = "admin-browser"
    max_attempts = 1

    def perform(self, job):
        return "done"


class TextWorker(ChunkWorker):
    """A chunk worker: its jobs lead chunks or run in one."""

    queue = "texts"
    size = 10

    def process(self, jobs):
        return None


TRACEBACK = ('Traceback (most recent call last):\n  File "workers.py", line 3, in perform\n'
             '    deliver(job.args["email"])\nConnectionError: SMTP <server> refused')


def make_job(worker=ReportWorker, args=None, *, state="available", **fields) -> Job:
    """Insert a job of ``worker`` and put it in ``state`` with ``fields`` (as if it had run)."""
    options = {k: fields.pop(k) for k in ("queue", "priority", "tags", "meta", "max_attempts")
               if k in fields}
    job = django_jobs.insert(worker.new(args or {}, **options))
    now = timezone.now()
    defaults = {
        "scheduled": {"scheduled_at": now + datetime.timedelta(hours=1)},
        "executing": {"attempt": 1, "attempted_at": now, "attempted_by": ["node-a", "p1"]},
        "retryable": {"attempt": 1, "attempted_at": now, "attempted_by": ["node-a", "p1"],
                      "scheduled_at": now + datetime.timedelta(minutes=5),
                      "errors": [{"at": now.isoformat(), "attempt": 1, "error": TRACEBACK}]},
        "completed": {"attempt": 1, "attempted_at": now - datetime.timedelta(seconds=2),
                      "completed_at": now, "attempted_by": ["node-a", "p1"]},
        "discarded": {"attempt": 1, "attempted_at": now, "discarded_at": now,
                      "attempted_by": ["node-b", "p2"],
                      "errors": [{"at": now.isoformat(), "attempt": 1, "error": TRACEBACK}]},
        "cancelled": {"cancelled_at": now},
    }.get(state, {})
    values = {"state": state, **defaults, **fields}
    if values.get("attempt", 0) > job.max_attempts:
        values.setdefault("max_attempts", values["attempt"])
    Job.objects.filter(pk=job.pk).update(**values)
    job.refresh_from_db()
    return job


def make_producer(queue="default", node="node-a", limit=10, paused=False) -> Producer:
    now = timezone.now()
    return Producer.objects.create(uuid=uuid.uuid4(), node=node, queue=queue, limit=limit,
                                   paused=paused, started_at=now, heartbeat_at=now)


def staff_user(username="staff", *perms: str) -> User:
    """A staff user with ``perms`` (codenames of django_jobs permissions)."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="django_jobs", codename__in=perms))
    return User.objects.get(pk=user.pk)  # fresh: no permission cache
