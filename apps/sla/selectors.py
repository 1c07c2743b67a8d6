"""SLA reads, scoped to what a user may see: every console page and API view reads through here."""

from __future__ import annotations

from .models import AlertEvent, SlaPolicy, SlaReport, SlaStatus, SlaViolation


def policies_for(user):
    return SlaPolicy.objects.restrict(user, "view").select_related("tenant")


def fleet_statuses(user):
    """Every visible tenant's last evaluation, worst first: in breach, then least budget left."""
    return (SlaStatus.objects.restrict(user, "view_dashboards").select_related("tenant")
            .order_by("compliant", "budget_remaining", "-open_violations", "tenant_id"))


def recent_violations(user, tenant, limit: int = 50):
    return SlaViolation.objects.restrict(user, "view_dashboards").filter(tenant=tenant)[:limit]


def alert_history(user, tenant):
    return AlertEvent.objects.restrict(user, "view_dashboards").filter(tenant=tenant)


def reports_for(user, tenant):
    return SlaReport.objects.restrict(user, "view_dashboards").filter(tenant=tenant)
