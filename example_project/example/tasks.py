"""A Django ``@task`` function that django_jobs runs through its ``django.tasks`` backend.

It exists only where that can work: the settings point ``TASKS`` at
``django_jobs.tasks.JobsBackend`` when ``django.tasks`` (Django 6.0+) or the ``django_tasks``
backport is importable and django_jobs has that backend. Elsewhere ``send_receipt`` is None
and :func:`unavailable_reason` says why (the demo prints it and skips the task).
"""

from __future__ import annotations

from importlib.util import find_spec

from django.conf import settings
from django.core.mail import send_mail

BACKEND = "django_jobs.tasks.JobsBackend"


def unavailable_reason() -> str | None:
    """None when ``send_receipt`` is defined, otherwise what it needs."""
    if getattr(settings, "TASKS", {}).get("default", {}).get("BACKEND") == BACKEND:
        return None
    if find_spec("django.tasks") is None and find_spec("django_tasks") is None:
        return "needs Django 6.0+"
    return f"needs {BACKEND}, which this django_jobs does not have yet"


send_receipt = None
if unavailable_reason() is None:
    try:
        from django.tasks import task
    except ImportError:  # Django 5.2: the django_tasks backport
        from django_tasks import task

    @task
    def send_receipt(order_id: int, email: str) -> str:
        """Mail the receipt of an order; the return value is the task's result."""
        send_mail(f"Receipt for order {order_id}", "Thank you for your order.", None, [email])
        return f"receipt {order_id} sent to {email}"
