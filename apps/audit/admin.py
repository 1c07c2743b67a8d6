"""Django admin: the audit trail read-only (an edit here would break the chain, and verify says so)."""

from django.contrib import admin

from .models import AuditEvent, Checkpoint, SinkState


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "tenant_id", "seq", "actor_label", "action", "resource_type", "resource_id", "result"]
    list_filter = ["result", "actor_type"]
    search_fields = ["action", "actor_label", "resource_id"]
    exclude = ["details"]
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("search", "details")


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant_id", "kind", "seq", "created_at", "key_id"]


@admin.register(SinkState)
class SinkStateAdmin(ReadOnlyAdmin):
    list_display = ["sink", "failures", "next_attempt_at", "last_success_at", "delivered_total", "last_error"]
