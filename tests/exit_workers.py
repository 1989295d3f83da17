"""Workers whose ``perform`` leaves by an exception that is not an ``Exception``
(tests/test_exits.py; module level: runjobs children import them)."""

import sys

from django_jobs import Worker

EXITS = {
    "SystemExit": lambda: sys.exit(2),
    "KeyboardInterrupt": lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    "GeneratorExit": lambda: (_ for _ in ()).throw(GeneratorExit()),
}


class ExitWorker(Worker):
    """Raises ``args["exit"]`` until attempt ``args["until"]`` (never, by default); a failed
    attempt is retried after 0.1 s."""

    queue = "exits"
    max_attempts = 3

    def perform(self, job):
        if job.attempt < job.args.get("until", 1_000):
            EXITS[job.args["exit"]]()
        return "done"

    def backoff(self, job):
        return 0.1
