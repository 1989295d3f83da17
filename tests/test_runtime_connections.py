"""Database connections a node holds: bounded by its pools, released when it stops."""

import gc
import unittest

from django.db import connection

from django_jobs.models import Job

from . import runtime_workers as w
from .helpers import describe_jobs, insert_jobs, wait_for_jobs
from .runtime_workers import RuntimeTestCase, open_connections_counter
from .waits import wait_until

LIMIT = 10
#: Connections besides the pool threads': producer loop, acker, heartbeat, notifier, leader.
OVERHEAD = 5


class ConnectionTests(RuntimeTestCase):
    def setUp(self):
        super().setUp()
        if connection.vendor != "postgresql":
            raise unittest.SkipTest(
                "SQLite connections are per-thread file handles with no server-side view of "
                "them (no pg_stat_activity); the bound is checked on PostgreSQL")

    def run_jobs(self, count, queue_limit):
        with open_connections_counter() as open_connections:
            baseline = open_connections()
            node = self.start_node({"orm": queue_limit}, plugins=True)
            jobs = Job.objects.filter(pk__in=[j.pk for j in insert_jobs(w.OrmWorker, count)])
            peak = [baseline]

            def finished():
                peak[0] = max(peak[0], open_connections())
                return not jobs.exclude(state="completed").exists()

            wait_until(finished, 60, interval=0.01, what=f"{count} jobs to complete",
                       describe=lambda: describe_jobs(jobs))
            peak[0] = max(peak[0], open_connections())
        return node, baseline, peak[0]

    def test_connections_stay_bounded_while_running_many_jobs(self):
        _node, baseline, peak = self.run_jobs(300, LIMIT)
        self.assertGreater(peak, baseline)  # the counter does see the node's connections
        self.assertLessEqual(peak - baseline, LIMIT + OVERHEAD,
                             f"{peak - baseline} connections for a pool of {LIMIT}")

    def test_connections_stay_bounded_over_many_small_batches(self):
        # Jobs trickling in one at a time reuse the pool threads' connections.
        with open_connections_counter() as open_connections:
            baseline = open_connections()
            self.start_node({"orm": 4})
            peak = baseline
            for batch in range(15):
                wait_for_jobs(job.pk for job in insert_jobs(w.OrmWorker, 5, b=batch))
                peak = max(peak, open_connections())
        self.assertLessEqual(peak - baseline, 4 + OVERHEAD)

    def test_stopped_node_releases_its_connections(self):
        with open_connections_counter() as open_connections:
            node, baseline, peak = self.run_jobs(100, LIMIT)
            # Without a cyclic GC pass during the check (it runs at random moments otherwise).
            gc.disable()
            self.addCleanup(gc.enable)
            self.stop_node(node)
            # PostgreSQL ends a backend a moment after its client closed the connection.
            wait_until(lambda: open_connections() <= baseline,
                       what=f"the connections to be back to {baseline} after the stop",
                       describe=lambda: f"{open_connections()} open (peak {peak})")
