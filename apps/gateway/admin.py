"""Django admin for gateway rows (the console is the main interface; secrets are never shown)."""

from django.contrib import admin

from .models import ApiKey, ModelPrice


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "tenant", "user", "is_platform_service", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["is_platform_service", "tenant"]
    search_fields = ["prefix", "name"]
    readonly_fields = ["prefix", "hashed_key", "revoked_at", "revoked_by", "last_used_at", "created_by"]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_1k", "output_per_1k", "currency", "effective_from"]
    list_filter = ["model"]
