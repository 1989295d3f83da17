"""``manage.py runjobs``: run this machine's node until SIGTERM/SIGINT.

Argument parsing only; the runtime lives in :mod:`django_jobs.runtime`.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import sys
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from ... import modes
from ...build import validate_queue
from ...conf import jobs_settings
from ...exceptions import InvalidJobError
from ...models import Job, JobState
from ...plugins import connect_builtin_plugins, connected_plugins
from ...runtime.node import Node
from ...runtime.supervisor import (INDEX_ENV, PARENT_ENV, Supervisor, child_argv,
                                   resolve_processes, watch_parent)


def queue_limit(value: str) -> tuple[str, int]:
    """argparse type for ``--queue NAME=LIMIT``."""
    name, sep, limit = value.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=LIMIT, e.g. mailers=5, not {value!r}")
    try:
        validate_queue(name)
    except InvalidJobError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not limit.isdigit() or int(limit) < 1:
        raise argparse.ArgumentTypeError(f"limit of queue {name!r} must be an integer of at "
                                         f"least 1, not {limit!r}")
    return name, int(limit)


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {value!r}")
    return number


def processes_count(value: str) -> int:
    """argparse type for --processes: a positive integer or "auto"."""
    try:
        return resolve_processes("auto" if value == "auto" else int(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--processes must be a positive integer or 'auto', "
                                         f"not {value!r}") from None


def rescue_delay(value: str) -> float:
    """argparse type for --rescue-after: long enough that live nodes (heartbeat every second)
    are never mistaken for dead ones."""
    seconds = positive_float(value)
    if seconds < 3:
        raise argparse.ArgumentTypeError(
            f"--rescue-after must be at least 3 seconds (nodes heartbeat every second), "
            f"not {value!r}")
    return seconds


class Command(BaseCommand):
    help = "Run background jobs: the queues of DJANGO_JOBS['QUEUES'] (or --queue) on this node."

    _from_cli = False

    def run_from_argv(self, argv) -> None:
        # Only a runjobs process of its own may end the interpreter early (see handle);
        # call_command() from a test or a script must return normally.
        self._from_cli = True
        super().run_from_argv(argv)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queue", "-q", dest="queues", action="append", type=queue_limit,
                            metavar="NAME=LIMIT",
                            help="Run queue NAME with LIMIT jobs at once (repeatable); "
                                 "replaces the queues from settings.")
        parser.add_argument("--node", help="Node name (default: DJANGO_JOBS['NODE'] or the "
                                           "host name).")
        parser.add_argument("--no-plugins", action="store_true",
                            help="Never become leader: no stager, pruner, lifeline or cron "
                                 "here.")
        parser.add_argument("--grace", type=positive_float, default=None,
                            help="Seconds running jobs get to finish on SIGTERM (default: "
                                 "DJANGO_JOBS['GRACE_PERIOD'], 15).")
        parser.add_argument("--rescue-after", type=rescue_delay, default=None,
                            help="Seconds without a heartbeat after which another node's jobs "
                                 "are rescued (default: DJANGO_JOBS['RESCUE_AFTER'], 15).")
        parser.add_argument("--processes", type=processes_count, default=None, metavar="N",
                            help="Worker processes under one supervisor, or 'auto' (one per "
                                 "core); queue limits are per process (default: "
                                 "DJANGO_JOBS['PROCESSES'], 1).")
        parser.add_argument("--stop-when-empty", action="store_true",
                            help="Exit once the queues have no job available or executing, "
                                 "and none scheduled or retryable within the next minute "
                                 "(demos and scripts).")

    def handle(self, *args, queues=None, node=None, no_plugins=False, grace=None,
               rescue_after=None, stop_when_empty=False, processes=None, verbosity=1,
               **options) -> None:
        if modes.current() in modes.MODES:
            raise CommandError(f"testing mode {modes.current()!r} is on (DJANGO_JOBS['TESTING'] "
                               f"or with_testing_mode): queues do not run.")
        queue_limits = dict(queues) if queues else dict(jobs_settings.QUEUES)
        if not queue_limits:
            raise CommandError("no queues to run: set DJANGO_JOBS['QUEUES'] or pass --queue")
        self._configure_logging(verbosity)
        if processes is None:
            try:
                processes = resolve_processes(jobs_settings.PROCESSES)
            except ValueError as exc:
                raise CommandError(f"DJANGO_JOBS['PROCESSES']: {exc}") from None
        if processes > 1:
            if not self._from_cli or stop_when_empty:
                raise CommandError("--processes runs worker processes of their own: start "
                                   "runjobs from the command line, without --stop-when-empty")
            grace = jobs_settings.GRACE_PERIOD if grace is None else grace
            # Children get their grace period, the settling of jobs blocked in C and the
            # writing of outcomes (node.stop), then they are killed.
            status = Supervisor(child_argv(sys.argv), processes, stop_within=grace + 40,
                                write=self.stdout.write).run()
            sys.stdout.flush()
            sys.exit(status)
        # The plugins own their options: a flag that overrides one rebuilds them (and the
        # settings' ones come back when the command returns, for call_command()).
        overrides = ({"lifeline": {"rescue_after": rescue_after}} if rescue_after is not None
                     else {})
        if overrides:
            connect_builtin_plugins(**overrides)
        try:
            node_obj = self._run(queue_limits, node, no_plugins, grace, stop_when_empty)
        finally:
            if overrides:
                connect_builtin_plugins()
        sys.stdout.flush()
        if node_obj.running_count() and self._from_cli:
            # A job blocked in C did not stop; it is already put back. Its pool thread would
            # keep the interpreter alive until the call returns (maybe never): exit now.
            logging.shutdown()
            sys.stderr.flush()
            os._exit(0)

    def _run(self, queue_limits, node, no_plugins, grace, stop_when_empty) -> Node:
        """Start the node, wait for SIGTERM/SIGINT (or empty queues), stop it; return it."""
        node_obj = Node(
            queues=queue_limits, name=node or jobs_settings.NODE, plugins=not no_plugins,
            grace=jobs_settings.GRACE_PERIOD if grace is None else grace)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if PARENT_ENV in os.environ:  # a worker process of a supervisor: stop when it is gone
            watch_parent(stop.set)
        node_obj.start()
        self._banner(node_obj)
        try:
            while not stop.wait(0.5):
                if stop_when_empty and self._drained(queue_limits):
                    break
        finally:
            node_obj.stop()
        return node_obj

    def _banner(self, node) -> None:
        queues = ", ".join(f"{p.queue}={p.limit}" for p in node.producers.values())
        plugins = (", ".join(p.name for p in connected_plugins()) or "none") if node.leads \
            else "none (--no-plugins)"
        notify = "LISTEN/NOTIFY" if node.engine.has_listen_notify else "polling"
        self.stdout.write(
            f"django_jobs node {node.name} started{self._process()}\n"
            f"  database: {node.engine.vendor} ({node.engine.alias}), wake-ups by {notify}\n"
            f"  queues:   {queues}\n"
            f"  plugins:  {plugins}\n"
            f"  leader:   {'yes' if node.is_leader else 'no'}\n")
        self.stdout.flush()

    @staticmethod
    def _process() -> str:
        index = os.environ.get(INDEX_ENV)
        return f" (worker process {index}, pid {os.getpid()})" if index else ""

    @staticmethod
    def _drained(queues) -> bool:
        soon = timezone.now() + datetime.timedelta(seconds=60)
        return not Job.objects.filter(
            Q(state__in=[JobState.AVAILABLE, JobState.EXECUTING])
            | Q(state__in=[JobState.SCHEDULED, JobState.RETRYABLE], scheduled_at__lte=soon),
            queue__in=list(queues)).exists()

    @staticmethod
    def _configure_logging(verbosity: int) -> None:
        logger = logging.getLogger("django_jobs")
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
