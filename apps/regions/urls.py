from django.urls import path

from . import status_views, views

app_name = "regions"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.region_create, name="region-create"),
    path("r/<slug:region_id>/edit/", views.region_edit, name="region-edit"),
    path("r/<slug:region_id>/delete/", views.region_delete, name="region-delete"),
    path("deployments/new/", views.deployment_create, name="deployment-create"),
    path("deployments/<uuid:pk>/", views.deployment_edit, name="deployment-edit"),
    path("deployments/<uuid:pk>/delete/", views.deployment_delete, name="deployment-delete"),
    path("deployments/<uuid:pk>/toggle/", views.deployment_toggle, name="deployment-toggle"),
    path("deployments/<uuid:pk>/end-cooldown/", views.deployment_end_cooldown, name="deployment-end-cooldown"),
    path("tenants/<slug:tenant_id>/", views.tenant_deployments, name="tenant-deployments"),
    # High availability: status page, failover policies and the failover timeline (status_views.py).
    path("status/", status_views.status, name="status"),
    path("status/policies/", status_views.policy_save, name="failover-policy-save"),
    path("status/policies/<str:model>/delete/", status_views.policy_delete, name="failover-policy-delete"),
    path("status/events/", status_views.events, name="failover-events"),
]
