"""Child processes in tests, on this run's test database, with bounded waits.

* :func:`run_django` / :func:`run_python`: a one-off command (``manage.py jobs ...``, pytest),
  its output captured; it fails the test instead of hanging past its timeout.
* :class:`RunjobsProcess`: a ``python -m django runjobs`` node, its output in a file.
* :class:`RunjobsMixin`: starts such nodes in a test case and kills every one of them when
  the test ends, whatever the outcome.

Children use tests/subprocess_settings.py, which points them at the test database of the
running test process (``DJANGO_JOBS_TEST_DB``, inherited), so they see the rows the test
writes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .waits import wait_until

#: Root of the repository holding this file (a fresh clone in CI, wherever it is).
REPO = Path(__file__).resolve().parent.parent
#: Longest a node may take to print its banner (starting Python and Django on a loaded
#: machine included).
STARTUP_TIMEOUT = 60.0
#: Set to a directory to keep there the output of every runjobs child, one folder a test.
KEEP_LOGS = "DJANGO_JOBS_SURVIVAL_LOGS"


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child process: this one's, with the test settings module, this
    repository importable and unbuffered output."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.subprocess_settings"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_python(args: list[str], *, timeout: float, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess:
    """``python ARGS`` in the repository, text output captured. Fails the test, with the
    output so far, when the child is still running after ``timeout`` s (it is killed)."""
    try:
        return subprocess.run([sys.executable, *args], cwd=REPO, env=env or child_env(),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        output = "\n".join(_text(part) for part in (exc.stdout, exc.stderr) if part)
        raise AssertionError(f"timed out after {timeout:g} s waiting for `python "
                             f"{' '.join(args)}` to exit; its output:\n{output[-3000:]}"
                             ) from None


def run_django(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``python -m django ARGS`` (a management command) on this run's test database."""
    return run_python(["-m", "django", *args], timeout=timeout)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the test process dies (Linux), so that not
    even a killed test run leaves nodes behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RunjobsProcess:
    """One ``python -m django runjobs --node NAME ARGS`` child; its output goes to
    ``log_path``."""

    def __init__(self, name: str, args: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        command = [sys.executable, "-m", "django", "runjobs", "--node", name, *args]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env or child_env(), stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        text = self.log().splitlines()[-lines:]
        return f"--- node {self.name} (pid {self.pid}, rc {self.process.poll()}) ---\n" + (
            "\n".join(text) or "(no output)")

    def started(self) -> bool:
        """True once the node has printed its banner."""
        return f"node {self.name} started" in self.log()

    def wait_started(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait for the banner; fail, with the output, if the node exits or is slower."""
        wait_until(lambda: self.started() or not self.alive(), timeout,
                   what=f"runjobs node {self.name} to start", describe=self.tail, interval=0.1)
        if not self.started():
            raise AssertionError(f"runjobs node {self.name} exited before it started\n"
                                 f"{self.tail()}")

    def terminate(self) -> None:
        """SIGTERM: stop gracefully."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` s."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class RunjobsMixin:
    """For test cases that start ``runjobs`` children: :meth:`start_runjobs`,
    :meth:`stop_runjobs`; every child is killed when its test ends.

    Failure messages go through :meth:`runjobs_report`, which a test case may extend (say,
    with the job counts).
    """

    def start_runjobs(self, name: str, *args: str, wait: bool = True,
                      jobs_settings: dict | None = None) -> RunjobsProcess:
        """Start ``runjobs --node NAME ARGS``; with ``wait``, wait for its banner.
        ``jobs_settings``: keys of ``DJANGO_JOBS`` the child has instead of the test
        settings' (JSON values; see tests/subprocess_settings.py)."""
        if not hasattr(self, "runjobs_processes"):
            self._runjobs_setup()
        log = self.runjobs_log_dir / f"node-{name}-{len(self.runjobs_processes)}.log"
        env = None
        if jobs_settings:
            env = child_env(DJANGO_JOBS_TEST_SETTINGS=json.dumps(jobs_settings))
        node = RunjobsProcess(name, list(args), log, env)
        self.runjobs_processes.append(node)
        if wait:
            self.wait_runjobs_started(node)
        return node

    def wait_runjobs_started(self, node: RunjobsProcess,
                             timeout: float = STARTUP_TIMEOUT) -> None:
        try:
            node.wait_started(timeout)
        except AssertionError as exc:
            raise AssertionError(self.runjobs_report(str(exc))) from None

    def stop_runjobs(self, *nodes: RunjobsProcess, within: float) -> float:
        """SIGTERM ``nodes`` together; assert each exits by itself, with status 0, within
        ``within`` s. Return how long they took."""
        started = time.monotonic()
        for node in nodes:
            node.terminate()
        for node in nodes:
            rc = node.wait(max(0.1, started + within - time.monotonic()))
            if rc is None:
                raise AssertionError(self.runjobs_report(
                    f"timed out after {within:g} s waiting for node {node.name} to exit after "
                    f"SIGTERM"))
            if rc != 0:
                raise AssertionError(self.runjobs_report(f"node {node.name} exited with {rc}"))
        return time.monotonic() - started

    def runjobs_report(self, message: str) -> str:
        """``message`` and the tail of every child's output."""
        return "\n".join([message, *(node.tail() for node in getattr(self, "runjobs_processes",
                                                                       []))])

    def _runjobs_setup(self) -> None:
        self.runjobs_processes: list[RunjobsProcess] = []
        tmp = tempfile.TemporaryDirectory(prefix="django_jobs-runjobs-")
        self.addCleanup(tmp.cleanup)
        self.runjobs_log_dir = Path(tmp.name)
        # Runs before the directory goes (cleanups are LIFO): no child outlives its test.
        self.addCleanup(self._kill_runjobs)

    def _kill_runjobs(self) -> None:
        for node in self.runjobs_processes:
            try:
                node.kill()
            except Exception:  # pragma: no cover - keep killing the others
                pass
        keep = os.environ.get(KEEP_LOGS)
        if keep:
            target = Path(keep) / self.id()
            target.mkdir(parents=True, exist_ok=True)
            for node in self.runjobs_processes:
                shutil.copy(node.log_path, target)
