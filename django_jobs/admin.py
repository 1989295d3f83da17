"""Admin registration: read-only views of jobs, the leader lease and producers."""

from django.contrib import admin

from .models import Job, Peer, Producer


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "worker", "queue", "state", "attempt", "max_attempts", "priority",
                    "scheduled_at"]
    list_filter = ["state", "queue", "priority"]
    search_fields = ["=id", "worker"]
    exclude = ["unique_slot"]


@admin.register(Peer)
class PeerAdmin(ReadOnlyAdmin):
    list_display = ["name", "node", "started_at", "expires_at"]


@admin.register(Producer)
class ProducerAdmin(ReadOnlyAdmin):
    list_display = ["queue", "node", "limit", "paused", "heartbeat_at"]
    list_filter = ["queue", "paused"]
