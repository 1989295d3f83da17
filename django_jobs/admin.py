"""Admin registration: read-only views of jobs, the leader lease and producers."""

from django.contrib import admin

from .models import CronEntry, Job, Peer, Producer


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


@admin.register(CronEntry)
class CronEntryAdmin(admin.ModelAdmin):
    list_display = ["name", "expression", "timezone", "worker", "paused", "source", "next_run",
                    "last_slot_at"]
    list_filter = ["paused", "source"]
    search_fields = ["name", "worker"]
    readonly_fields = ["source", "last_slot_at", "created_at", "updated_at"]

    @admin.display(description="next run")
    def next_run(self, entry):
        try:
            if entry.expression_obj.reboot:
                return "at cluster start"
            return entry.next_run() or "never"
        except Exception:
            return "invalid expression"

    def get_readonly_fields(self, request, obj=None):
        from .models import CronSource

        if obj is not None and obj.source == CronSource.SETTINGS:
            # Mirrors DJANGO_JOBS["CRONTAB"]: only pausing is changed here.
            return [f.name for f in obj._meta.fields if f.name != "paused"]
        return self.readonly_fields
