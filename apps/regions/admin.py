"""Django admin for regions and deployments (credentials are never shown or edited here)."""

from django.contrib import admin

from .models import Deployment, Region


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "group", "enabled"]
    list_filter = ["group", "enabled"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "model", "provider", "region", "tenant", "priority", "enabled"]
    list_filter = ["provider", "region", "enabled"]
    search_fields = ["name", "model", "upstream_model"]
    exclude = ["api_key"]
