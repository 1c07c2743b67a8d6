"""Django admin for keys: read-only views of keyrings, versions and jobs (no key material)."""

from django.contrib import admin

from .models import DataKey, Keyring, ReencryptionJob


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Keyring)
class KeyringAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "created_at", "destroyed_at"]
    search_fields = ["tenant_id"]


@admin.register(DataKey)
class DataKeyAdmin(ReadOnlyAdmin):
    list_display = ["tenant_id", "version", "state", "kek_id", "created_at", "retired_at", "destroyed_at"]
    list_filter = ["state"]
    search_fields = ["tenant_id"]
    fields = ["tenant_id", "version", "state", "kek_id", "created_at", "demoted_at", "retired_at", "destroyed_at"]


@admin.register(ReencryptionJob)
class ReencryptionJobAdmin(ReadOnlyAdmin):
    list_display = ["tenant_id", "target_version", "status", "rows_reencrypted", "rows_failed", "runs",
                    "started_at", "finished_at"]
    list_filter = ["status"]
