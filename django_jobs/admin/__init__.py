"""The django_jobs admin: the job browser with its actions and detail panels, the queues and
dashboard pages (URLs of ``JobAdmin``, so any AdminSite that registers it serves them), cron
entries, producers and the leader lease.

To use a custom AdminSite, register the same classes on it::

    from django_jobs.admin import CronEntryAdmin, JobAdmin
    my_site.register(Job, JobAdmin)
    my_site.register(CronEntry, CronEntryAdmin)
"""

from django.contrib import admin

from ..models import Batch, CronEntry, Job, Peer, Producer, QueueCommand
from .batches import BatchAdmin
from .cron import CronEntryAdmin
from .guards import GuardedAdmin
from .jobs import JobAdmin
from .panels import register_panel, unregister_panel


class ReadOnlyAdmin(GuardedAdmin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PeerAdmin(ReadOnlyAdmin):
    list_display = ["name", "node", "started_at", "expires_at"]


class ProducerAdmin(ReadOnlyAdmin):
    list_display = ["queue", "node", "limit", "paused", "heartbeat_at"]
    list_filter = ["queue", "paused"]


class QueueCommandAdmin(ReadOnlyAdmin):
    list_display = ["id", "action", "queue", "node", "limit", "created_at"]
    list_filter = ["action", "queue"]


admin.site.register(Job, JobAdmin)
admin.site.register(Peer, PeerAdmin)
admin.site.register(Producer, ProducerAdmin)
admin.site.register(QueueCommand, QueueCommandAdmin)
admin.site.register(CronEntry, CronEntryAdmin)
admin.site.register(Batch, BatchAdmin)

__all__ = ["BatchAdmin", "CronEntryAdmin", "JobAdmin", "PeerAdmin", "ProducerAdmin",
           "QueueCommandAdmin", "ReadOnlyAdmin", "register_panel", "unregister_panel"]
