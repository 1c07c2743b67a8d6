"""Console pages of the gateway."""

from django.urls import path

from apps.tenants.tabs import register_tab

from . import views, violation_views

app_name = "gateway"

urlpatterns = [
    path("usage/", views.usage_overview, name="usage"),
    path("<slug:tenant_id>/api-keys/", views.api_keys, name="api-keys"),
    path("<slug:tenant_id>/api-keys/<uuid:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("<slug:tenant_id>/usage/", views.tenant_usage, name="tenant-usage"),
    path("<slug:tenant_id>/violations/", violation_views.ViolationListView.as_view(), name="violations"),
]

# The URL map loads before any page renders, so the tenant tabs are in place for the first page.
register_tab("API keys", "gateway:api-keys", "manage")
register_tab("Usage", "gateway:tenant-usage", "view_usage")
register_tab("Quota violations", "gateway:violations", "view_usage")
register_tab("Notifications", "core:notifications", "manage")
