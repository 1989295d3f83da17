"""SQLite: one writer at a time (immediate transactions), no NOTIFY, polling."""

from .base import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"
    has_listen_notify = False
    has_skip_locked = False
    serialises_writes = True
    # SQLITE_MAX_VARIABLE_NUMBER defaults to 32766 since SQLite 3.32.
    max_query_params = 32766
