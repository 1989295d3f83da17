"""A job process (``executor = "process"``): runs attempts one at a time for its node.

Started by :class:`django_jobs.runtime.process_pool.ProcessPool` as
``python -m django_jobs.runtime.child IN_FD OUT_FD`` with the node's settings module and
``sys.path``. It reads jobs from ``IN_FD`` and, for each, runs the whole attempt — the job
features' ``before`` steps, ``perform``, the ``after`` steps — through the same executor as a
node's threads, then writes the outcome to ``OUT_FD`` (:mod:`django_jobs.runtime.wire`).
The node writes the outcome through the door. When the attempt's run begins, the child tells
the node how long it may take (the worker's ``timeout``, or a feature's cancel time such as a
forced deadline): the node kills the child when it is over, or when the job is cancelled.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    import django

    django.setup()
    from ..execution.executor import execute
    from ..execution.interrupt import Running
    from . import wire

    class ChildRunning(Running):
        """Tells the node, as the run begins, when it must end and why."""

        def start(self) -> None:
            super().start()
            left = None if self.deadline is None else self.deadline - time.monotonic()
            out.write(wire.encode({"started": {"left": left, "timeout": self.timeout,
                                               "kind": self.deadline_kind.reason}}))
            out.flush()

    source = os.fdopen(int(argv[1]), "rb")
    out = os.fdopen(int(argv[2]), "wb")
    for line in source:
        job = wire.job_from_message(wire.decode(line)["job"])
        outcome, _ = execute(ChildRunning(job))
        out.write(wire.encode({"outcome": wire.outcome_message(outcome)}))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
