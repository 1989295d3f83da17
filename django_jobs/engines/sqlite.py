"""SQLite: one writer at a time (immediate transactions), no NOTIFY, polling."""

from .base import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"
    has_listen_notify = False
    has_skip_locked = False
    serialises_writes = True

    @property
    def max_query_params(self) -> int:
        """SQLite's compiled-in limit on bind parameters (32766 by default since 3.32)."""
        import sqlite3

        self.connection.ensure_connection()
        return self.connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
