"""SLA API routes: /api/v1/sla/policies/ and /api/v1/tenants/<tenant>/sla/..."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("sla/policies", api.SlaPolicyViewSet, basename="sla-policy")

urlpatterns = [
    *router.urls,
    path("tenants/<slug:tenant_pk>/sla/policy/",
         api.TenantPolicyViewSet.as_view({"get": "list", "put": "update", "delete": "destroy"}), name="sla-tenant-policy"),
    path("tenants/<slug:tenant_pk>/sla/", api.ComplianceViewSet.as_view({"get": "list"}), name="sla-compliance"),
    path("tenants/<slug:tenant_pk>/sla/violations/", api.ViolationViewSet.as_view({"get": "list"}),
         name="sla-violation-list"),
    path("tenants/<slug:tenant_pk>/sla/alerts/", api.AlertEventViewSet.as_view({"get": "list"}), name="sla-alert-list"),
    path("tenants/<slug:tenant_pk>/sla/reports/", api.ReportViewSet.as_view({"get": "list", "post": "create"}),
         name="sla-report-list"),
    path("tenants/<slug:tenant_pk>/sla/credits/", api.CreditViewSet.as_view({"get": "list"}), name="sla-credit-list"),
]
