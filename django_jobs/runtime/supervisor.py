"""``runjobs --processes N``: N worker processes under one supervisor.

The supervisor runs no job and opens no database connection. It starts N children, each the
same ``runjobs`` command as a process of its own (so each child is a full node: its producers,
acker, heartbeat and a chance at the leader lease, which one of them holds at a time), and:

* restarts a child that dies (its jobs are rescued the usual way: its producer rows stop
  heartbeating and the lifeline puts them back), waiting a little longer each time a child
  dies young, so a child that cannot start does not spin;
* on SIGTERM or SIGINT, passes SIGTERM to every child, waits for them to finish their jobs
  (their grace period plus a margin), kills what is left, and exits;
* dies without leaving children behind: each child watches its parent and stops, as on
  SIGTERM, when the supervisor is gone (SIGKILL, OOM killer), so no job stays executing.

Queue limits are per process: ``--processes 4`` with ``default=10`` runs up to 40 jobs of
``default`` on the machine. Children share the node's name (control commands aimed at the node
reach all of them); each has its own producer rows.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("django_jobs.supervisor")

#: Environment variable naming, in a child, the pid of its supervisor (set by the supervisor).
PARENT_ENV = "DJANGO_JOBS_SUPERVISOR_PID"
#: Environment variable numbering a child (1..N), for its banner and logs.
INDEX_ENV = "DJANGO_JOBS_PROCESS_INDEX"
#: A child that dies within this many seconds of its start died young: the next restart waits.
YOUNG = 10.0
#: Longest wait before restarting a child that keeps dying young.
MAX_RESTART_DELAY = 30.0


def resolve_processes(value: int | str) -> int:
    """``--processes`` / ``DJANGO_JOBS["PROCESSES"]``: a positive integer, or ``"auto"`` for
    the number of cores this process may run on."""
    if value == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"processes must be a positive integer or 'auto', not {value!r}")
    return value


class Supervisor:
    """Runs ``argv`` (a ``runjobs`` command line without ``--processes``) ``count`` times."""

    def __init__(self, argv: Sequence[str], count: int, *, stop_within: float,
                 write: Callable[[str], None] = print) -> None:
        self.argv = list(argv)
        self.count = count
        #: How long children get to stop after SIGTERM before they are killed.
        self.stop_within = stop_within
        self.write = write
        self.children: dict[int, subprocess.Popen] = {}
        self._started: dict[int, float] = {}
        self._delay: dict[int, float] = {}
        self._stop = threading.Event()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())
        for index in range(1, self.count + 1):
            self._start(index)
        self.write(f"django_jobs supervisor (pid {os.getpid()}) started {self.count} worker "
                   f"processes: {', '.join(str(c.pid) for c in self.children.values())}")
        restart_at: dict[int, float] = {}
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for index, child in list(self.children.items()):
                if index in restart_at or child.poll() is None:
                    continue
                young = now - self._started[index] < YOUNG
                delay = min(MAX_RESTART_DELAY, self._delay.get(index, 0.5) * 2) if young \
                    else 0.5
                self._delay[index] = delay
                logger.warning("worker process %d (pid %d) exited with %s; restarting it in "
                               "%.1f s", index, child.pid, child.returncode, delay)
                restart_at[index] = now + delay
            for index, at in list(restart_at.items()):
                if now >= at:
                    del restart_at[index]
                    self._start(index)
        return self._stop_children()

    def _start(self, index: int) -> None:
        env = {**os.environ, PARENT_ENV: str(os.getpid()), INDEX_ENV: str(index)}
        self.children[index] = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL)
        self._started[index] = time.monotonic()

    def _stop_children(self) -> int:
        live = [c for c in self.children.values() if c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_within
        for child in live:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker process pid %d did not stop in %.0f s; killing it",
                             child.pid, self.stop_within)
                child.kill()
                child.wait()
        return 0


def child_argv(argv: Sequence[str]) -> list[str]:
    """This process's command line for a child: the same interpreter and arguments, without
    ``--processes`` (children run one process each)."""
    args, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        args.append(arg)
    # ``python -m django``: argv[0] is django/__main__.py, which must not run as a script (its
    # folder would come first on sys.path, and django/http would shadow the standard http).
    if os.path.basename(argv[0]) == "__main__.py":
        head = [sys.executable, "-m", os.path.basename(os.path.dirname(argv[0]))]
    else:
        head = [sys.executable, argv[0]]
    return [*head, *args, "--processes", "1"]


def watch_parent(stop: Callable[[], None]) -> None:
    """In a child of a supervisor: call ``stop`` (once) when the supervisor is gone.

    Linux tells the child at once (``PR_SET_PDEATHSIG``: SIGTERM, which ``runjobs`` handles
    as a normal stop); a thread polling the parent's pid every second covers the rest (and a
    parent that died before the signal was set up)."""
    parent = int(os.environ[PARENT_ENV])
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def poll() -> None:
        while True:
            if os.getppid() != parent:
                logger.error("the supervisor (pid %d) is gone: stopping", parent)
                stop()
                return
            time.sleep(1.0)

    threading.Thread(target=poll, name="django_jobs-parent", daemon=True).start()
