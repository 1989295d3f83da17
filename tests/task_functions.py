"""Task functions for tests/test_tasks.py, decorated with Django's ``@task`` (django.tasks, or
the django-tasks backport on Django 5.2). Imported only where one of them is available.

Every result a test checks is a return value, recorded with the job, so a test reads what a
``runjobs`` child did from the database through ``get_result``.
"""

import asyncio
import time

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from django_jobs.tasks import task_options


class TaskFailure(Exception):
    """What the failing tasks raise."""


@task
def add(a, b):
    return a + b


@task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@task
def returns_nothing():
    return None


@task(priority=100, queue_name="mailers")
def urgent(n):
    return n


@task(priority=-100)
def whenever(n):
    return n


@task(takes_context=True)
def context_info(context, x):
    result = context.task_result
    return {"x": x, "attempt": context.attempt, "id": result.id, "status": str(result.status),
            "worker_ids": result.worker_ids, "path": result.task.module_path}


@task(takes_context=True)
@task_options(max_attempts=3, backoff=0.2)
def flaky(context, succeed_on):
    """Fails until attempt ``succeed_on``; returns the attempt that succeeded."""
    if context.attempt < succeed_on:
        raise TaskFailure(f"attempt {context.attempt} fails")
    return context.attempt


@task
@task_options(max_attempts=2, backoff=0.2)
def always_fails(message):
    raise TaskFailure(message)


@task
async def async_add(a, b):
    await asyncio.sleep(0)
    return a + b


@task(takes_context=True)
async def async_context(context):
    await asyncio.sleep(0)
    return context.attempt


@task
def returns_a_set():
    return {1, 2}


@task
@task_options(result_limit=100)
def returns_too_much():
    return "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2000))


@task
@task_options(timeout=0.5, max_attempts=1)
def sleeps(seconds):
    """Sleeps in short steps (a timeout stops Python code between two of them)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return seconds


@task
@task_options(timeout=0.5, max_attempts=1)
async def async_sleeps(seconds):
    await asyncio.sleep(seconds)
    return seconds


@task
@task_options(unique={"period": 60}, tags=["once"])
def unique_ping(n):
    return n
