from django.urls import path

from . import views

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
]
