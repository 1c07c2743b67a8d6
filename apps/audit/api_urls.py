"""Audit API routes, mounted at /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .api import AuditEventViewSet, ComplianceReportView, SigningKeyView

router = SimpleRouter()
router.register("audit/events", AuditEventViewSet, basename="audit-event")

urlpatterns = [
    path("audit/compliance/", ComplianceReportView.as_view(), name="audit-compliance"),
    path("audit/signing-key/", SigningKeyView.as_view(), name="audit-signing-key"),
    *router.urls,
]
