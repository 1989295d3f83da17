"""The leader lease: which node runs the cluster-wide plugins; and the cluster marker."""

from __future__ import annotations

import datetime
import uuid

from django.db import connections, models


class PeerQuerySet(models.QuerySet):
    def renew_marker(self, name: str, now: datetime.datetime,
                     ttl: datetime.timedelta) -> str | None:
        """Extend the marker row ``name`` to ``now + ttl``; when it was missing or expired,
        write a new id into it and return that id (the cluster started afresh), else None.

        One upsert, so concurrent leaders for a moment agree on one id.
        """
        connection = connections[self.db]
        adapt = connection.ops.adapt_datetimefield_value
        fresh = uuid.uuid4().hex
        with connection.cursor() as cursor:
            # Renew a live marker; replace (with a new id) a missing or expired one.
            cursor.execute("""
                INSERT INTO django_jobs_peer (name, node, started_at, expires_at)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    node = CASE WHEN django_jobs_peer.expires_at < %s THEN excluded.node
                                ELSE django_jobs_peer.node END,
                    started_at = CASE WHEN django_jobs_peer.expires_at < %s
                                      THEN excluded.started_at
                                      ELSE django_jobs_peer.started_at END,
                    expires_at = excluded.expires_at
                RETURNING node
            """, [name, fresh, adapt(now), adapt(now + ttl), adapt(now), adapt(now)])
            row = cursor.fetchone()
        return fresh if row and row[0] == fresh else None


class Peer(models.Model):
    """One row per cluster: the node holding the leader lease until ``expires_at``.

    A node becomes leader by inserting the row, or by taking it over once it has expired; the
    leader extends ``expires_at`` while it lives. Only the leader runs the plugins (stager,
    pruner, lifeline, cron).
    """

    name = models.CharField(max_length=64, primary_key=True, default="django_jobs")
    node = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    objects = PeerQuerySet.as_manager()

    class Meta:
        db_table = "django_jobs_peer"

    def __str__(self) -> str:
        return f"{self.name}: {self.node} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
