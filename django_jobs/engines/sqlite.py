"""SQLite: one writer at a time (immediate transactions), no NOTIFY, polling."""

import sqlite3
from collections.abc import Sequence

from ..models.job import STATE_BITS, unique_key_sql
from .base import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"
    has_listen_notify = False

    @property
    def max_query_params(self) -> int:
        """SQLite's compiled-in limit on bind parameters (32766 by default since 3.32)."""
        self.connection.ensure_connection()
        return self.connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def serialize(self, keys) -> None:
        # SQLite has one writer at a time: taking the write lock now (a write that matches no
        # row still starts a write transaction) serialises the rest of this transaction with
        # every other writer, whatever the keys. With transaction_mode IMMEDIATE (check W001)
        # the transaction holds it from BEGIN already.
        if keys:
            with self.connection.cursor() as cursor:
                cursor.execute("UPDATE django_jobs_peer SET node = node WHERE 0 = 1")

    def is_busy(self, exc: BaseException) -> bool:
        # Another process holds the write lock for longer than the connection's timeout.
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return getattr(cause, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY,
                                                            sqlite3.SQLITE_LOCKED)

    def fetch_statement(self, queue: str, limit: int, now, attempted_by: str,
                        ids: Sequence[int] | None = None,
                        worker: str | None = None) -> tuple[str, list]:
        # One UPDATE ... RETURNING: SQLite runs it as a write transaction of its own, and
        # writers are serialised, so no other process can claim the same rows. The subquery
        # walks the partial fetch index (state = 'available').
        return """
            UPDATE django_jobs_job
            SET state = 'executing', attempt = attempt + 1, attempted_at = %s, attempted_by = %s,
                -- An available job out of attempts (a row no API writes) gets one more, as
                -- retry_job gives: the attempt check would otherwise fail the whole claim.
                max_attempts = MAX(max_attempts, attempt + 1),
                unique_key = {unique_key}
            WHERE id IN (
                SELECT id FROM django_jobs_job
                WHERE state = 'available' AND queue = %s {only} {worker}
                ORDER BY priority, scheduled_at, id
                LIMIT %s
            )
            RETURNING *
        """.replace("{unique_key}", unique_key_sql()).replace("{only}", "" if ids is None else
                    f"AND id IN ({', '.join(['%s'] * len(ids))})" if ids else "AND 0").replace(
            "{worker}", "" if worker is None else "AND worker = %s"), [
            now, attempted_by, STATE_BITS["executing"], queue, *(ids or []),
            *([] if worker is None else [worker]), limit]
