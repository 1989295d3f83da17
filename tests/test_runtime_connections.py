"""Database connections a node holds: bounded by its pools, released when it stops."""

import gc
import unittest

from django.db import connection

from django_jobs.models import Job

from . import runtime_workers as w
from .runtime_workers import RuntimeTestCase, open_connections_counter, wait_until

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
        import django_jobs

        with open_connections_counter() as open_connections:
            baseline = open_connections()
            node = self.start_node({"orm": queue_limit}, plugins=True)
            jobs = django_jobs.insert_all([w.OrmWorker.new({"i": i}) for i in range(count)])
            peak = [baseline]

            def finished():
                peak[0] = max(peak[0], open_connections())
                return not Job.objects.filter(pk__in=[j.pk for j in jobs]).exclude(
                    state="completed").exists()

            wait_until(finished, 30, interval=0.01, message=f"{count} jobs completed")
            peak[0] = max(peak[0], open_connections())
        return node, baseline, peak[0]

    def test_connections_stay_bounded_while_running_many_jobs(self):
        _node, baseline, peak = self.run_jobs(300, LIMIT)
        self.assertGreater(peak, baseline)  # the counter does see the node's connections
        self.assertLessEqual(peak - baseline, LIMIT + OVERHEAD,
                             f"{peak - baseline} connections for a pool of {LIMIT}")

    def test_connections_stay_bounded_over_many_small_batches(self):
        # Jobs trickling in one at a time reuse the pool threads' connections.
        import django_jobs

        with open_connections_counter() as open_connections:
            baseline = open_connections()
            self.start_node({"orm": 4})
            peak = baseline
            for batch in range(15):
                jobs = django_jobs.insert_all([w.OrmWorker.new({"b": batch, "i": i})
                                               for i in range(5)])
                ids = [j.pk for j in jobs]
                wait_until(lambda ids=ids: not Job.objects.filter(pk__in=ids)
                           .exclude(state="completed").exists())
                peak = max(peak, open_connections())
        self.assertLessEqual(peak - baseline, 4 + OVERHEAD)

    def test_stopped_node_releases_its_connections(self):
        with open_connections_counter() as open_connections:
            node, baseline, peak = self.run_jobs(100, LIMIT)
            # Without a cyclic GC pass during the check (it runs at random moments otherwise).
            gc.disable()
            self.addCleanup(gc.enable)
            node.stop()
            wait_until(lambda: open_connections() <= baseline, 2,
                       message=f"connections back to {baseline} after stop "
                               f"(peak {peak})")
