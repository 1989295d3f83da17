"""Helpers shared by the test modules."""

import tempfile
from contextlib import contextmanager

from django.db import connections
from django.test.utils import CaptureQueriesContext


@contextmanager
def count_statements(using="default"):
    """Collect the statements the database runs inside the block, whoever sends them.

    ``CaptureQueriesContext`` only sees queries made through Django's cursor wrapper, and an
    engine may talk to its driver directly (COPY, server-side binding). On PostgreSQL this
    therefore traces the libpq protocol and records one entry (the command tag, e.g.
    ``"INSERT 0 5000"``, ``"COPY 5000"``, ``"SAVEPOINT"``) per statement the server completed.
    On SQLite it records the SQL of each query (every query goes through Django there).

    The list yielded is filled when the block exits.
    """
    connection = connections[using]
    statements = []
    if connection.vendor == "postgresql":
        from psycopg import pq

        connection.ensure_connection()
        pgconn = connection.connection.pgconn
        with tempfile.TemporaryFile("w+") as trace:
            pgconn.trace(trace.fileno())
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                yield statements
            finally:
                pgconn.untrace()
                trace.seek(0)
                for line in trace:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) >= 4 and parts[0] == "B" and parts[2] == "CommandComplete":
                        statements.append(parts[3].strip().strip('"'))
    else:
        with CaptureQueriesContext(connection) as context:
            yield statements
        statements.extend(query["sql"] for query in context.captured_queries)

