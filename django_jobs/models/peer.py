"""The leader lease: which node runs the cluster-wide plugins."""

from django.db import models


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

    class Meta:
        db_table = "django_jobs_peer"

    def __str__(self) -> str:
        return f"{self.name}: {self.node} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
