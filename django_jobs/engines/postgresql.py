"""PostgreSQL: row locks with SKIP LOCKED, LISTEN/NOTIFY, concurrent writers."""

from .base import Engine


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    has_listen_notify = True
    has_skip_locked = True
    serialises_writes = False
    max_query_params = 65535
