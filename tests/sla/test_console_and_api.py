"""Console pages and the API: tenant users see only their tenant (another tenant is a 404), policy
changes are platform admins' and validated with field messages, reports are generated and downloaded."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from apps.sla.models import ReportStatus, SlaPolicy, SlaReport
from apps.sla.rollups import rollup_range
from apps.sla.services import evaluate_all

from .conftest import stream


@pytest.fixture
def traffic(personas, usage_writer, base_time):
    for tenant, ratio in ((personas.tenant_a, 0.0), (personas.tenant_b, 0.05)):
        usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=30, per_minute=20, error_ratio=ratio))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=30))
    evaluate_all()
    return base_time


def test_the_tenant_dashboard_shows_compliance_and_server_built_figures(personas, client_for, traffic):
    response = client_for(personas.a_viewer).get("/sla/tenant-a/?range=7d")
    assert response.status_code == 200
    body = response.content.decode()
    assert "vendor/plotly/plotly.min.js" in body and "cdn" not in body.lower()
    start = body.index('<script type="application/json" id="sla-figures">') + len('<script type="application/json" id="sla-figures">')
    figures = json.loads(body[start:body.index("</script>", start)])
    assert set(figures) == {"chart-availability", "chart-latency", "chart-traffic", "chart-budget"}
    assert sum(figures["chart-traffic"]["data"][0]["y"]) == 600
    assert 'id="sla-requests">600<' in body


def test_the_dashboard_refresh_returns_only_the_live_fragment(personas, client_for, traffic):
    response = client_for(personas.a_member).get("/sla/tenant-a/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content and b"sla-figures" in response.content


def test_an_outsider_gets_404_for_another_tenants_sla_pages(personas, client_for, traffic):
    client = client_for(personas.b_admin)
    for path in ("/sla/tenant-a/", "/sla/tenant-a/policy/", "/sla/tenant-a/alerts/", "/sla/tenant-a/reports/"):
        assert client.get(path).status_code == 404, path


def test_the_fleet_view_shows_a_tenant_user_only_their_tenant(personas, client_for, traffic):
    body = client_for(personas.a_viewer).get("/sla/").content.decode()
    assert "Tenant A" in body and "Tenant B" not in body


def test_the_fleet_view_shows_a_platform_admin_every_tenant_worst_first(personas, client_for, traffic):
    body = client_for(personas.platform_admin).get("/sla/").content.decode()
    assert body.index("Tenant B") < body.index("Tenant A")  # B is in breach
    assert "in breach" in body


def test_a_tenant_admin_cannot_change_their_own_sla(personas, client_for):
    response = client_for(personas.a_admin).post("/sla/tenant-a/policy/", {"name": "Mine", "availability_target": "50",
                                                                           "window": "rolling_30d"})
    assert response.status_code == 403
    assert not SlaPolicy.objects.filter(tenant=personas.tenant_a).exists()


def test_a_platform_admin_saves_a_policy_and_bad_input_gets_field_messages(personas, client_for):
    client = client_for(personas.platform_admin)
    bad = client.post("/sla/tenant-a/policy/", {"name": "Gold", "availability_target": "101", "window": "rolling_30d",
                                                "latency_p50_ms": "900", "latency_p95_ms": "500",
                                                "credit_schedule": "99.9 ten"})
    assert bad.status_code == 400
    errors = bad.context["form"].errors
    assert set(errors) >= {"availability_target", "latency_p95_ms", "credit_schedule"}
    good = client.post("/sla/tenant-a/policy/", {"name": "Gold", "availability_target": "99.95", "window": "calendar_month",
                                                 "latency_p99_ms": "3000", "credit_schedule": "99.95: 10\n99: 30",
                                                 "enabled": "on"})
    assert good.status_code == 302
    policy = SlaPolicy.objects.get(tenant=personas.tenant_a)
    assert policy.credit_schedule == [{"below": "99.95", "credit_percent": "10"}, {"below": "99", "credit_percent": "30"}]
    from apps.audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="sla.policy.created", tenant_id="tenant-a").exists()


def test_the_policy_api_validates_with_field_level_messages(personas, api_for):
    client = api_for(personas.platform_admin)
    response = client.post("/api/v1/sla/policies/", {
        "tenant": "tenant-a", "name": "x", "availability_target": "99.9", "window": "weekly",
        "credit_schedule": [{"below": "120", "credit_percent": "10"}]}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) >= {"window", "credit_schedule.0.below"}
    created = client.post("/api/v1/sla/policies/", {"tenant": "tenant-a", "name": "API", "availability_target": "99.5",
                                                    "window": "rolling_30d"}, format="json")
    assert created.status_code == 201, created.json()


def test_tenant_users_cannot_write_policies_and_see_only_their_own(personas, api_for):
    SlaPolicy.objects.create(tenant=personas.tenant_b, name="B only")
    client = api_for(personas.a_admin)
    assert client.post("/api/v1/sla/policies/", {"tenant": "tenant-a", "name": "x", "availability_target": "50",
                                                 "window": "rolling_30d"}, format="json").status_code == 403
    assert [p["name"] for p in client.get("/api/v1/sla/policies/").json()["results"]] == []


def test_the_compliance_api_is_scoped_to_the_tenant(personas, api_for, traffic):
    assert api_for(personas.a_viewer).get("/api/v1/tenants/tenant-a/sla/").json()["window"]["requests"] == 600
    assert api_for(personas.b_admin).get("/api/v1/tenants/tenant-a/sla/").status_code == 404


def test_a_report_is_generated_and_downloaded_and_another_tenants_is_a_404(personas, client_for, traffic, eager_celery,
                                                                           django_capture_on_commit_callbacks):
    client = client_for(personas.a_admin)
    day = traffic.date().isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/sla/tenant-a/reports/", {"period_start": day, "period_end": day})
    assert response.status_code == 302
    report = SlaReport.objects.get(tenant=personas.tenant_a)
    assert report.status == ReportStatus.READY, report.error
    assert report.summary["requests"] == 600

    download = "/sla/{tenant}/reports/download/?report={pk}&format={fmt}"
    pdf = client.get(download.format(tenant="tenant-a", pk=report.pk, fmt="pdf"))
    assert pdf.status_code == 200 and b"".join(pdf.streaming_content).startswith(b"%PDF")
    csv_body = b"".join(client.get(download.format(tenant="tenant-a", pk=report.pk, fmt="csv")).streaming_content).decode()
    assert csv_body.splitlines()[0].startswith("date,requests,failures,availability_pct")
    assert ",600,0," in csv_body

    outsider = client_for(personas.b_admin)
    assert outsider.get(download.format(tenant="tenant-a", pk=report.pk, fmt="pdf")).status_code == 404
    assert outsider.get(download.format(tenant="tenant-b", pk=report.pk, fmt="pdf")).status_code == 404
    assert client.get("/sla/tenant-a/reports/download/?report=nope").status_code == 400
    from apps.audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="sla.report.downloaded", tenant_id="tenant-a").count() == 2


def test_a_viewer_cannot_request_reports_and_bad_dates_get_messages(personas, client_for):
    assert client_for(personas.a_viewer).post("/sla/tenant-a/reports/", {"period_start": "2026-01-02",
                                                                        "period_end": "2026-01-01"}).status_code == 403
    response = client_for(personas.a_admin).post("/sla/tenant-a/reports/", {"period_start": "2026-01-02",
                                                                           "period_end": "2026-01-01"})
    assert response.status_code == 400 and "period_end" in response.context["form"].errors


def test_the_monthly_schedule_makes_each_report_once(personas, eager_celery, django_capture_on_commit_callbacks):
    from apps.sla.services import schedule_monthly_reports
    from apps.tenants.models import Tenant

    Tenant.objects.update(created_at=traffic_free_past())
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule_monthly_reports() == 2
    assert schedule_monthly_reports() == 0
    assert SlaReport.objects.filter(monthly=True, status=ReportStatus.READY).count() == 2


def traffic_free_past():
    from datetime import UTC, datetime

    return datetime(2020, 1, 1, tzinfo=UTC)


def test_the_dashboard_figures_are_valid_plotly_figures(personas, traffic):
    import plotly.graph_objects as go

    from apps.sla.views import dashboard_context

    context = dashboard_context(personas.a_viewer, personas.tenant_a, "24h")
    for name, spec in json.loads(context["figures_json"]).items():
        go.Figure(spec)  # full validation of every trace and array, which raises on anything invalid
        assert spec["data"], name


def test_violation_alert_and_credit_lists_are_scoped_by_role(personas, api_for, traffic):
    assert api_for(personas.b_admin).get("/api/v1/tenants/tenant-b/sla/violations/").json()["results"]
    assert api_for(personas.b_admin).get("/api/v1/tenants/tenant-b/sla/alerts/").status_code == 200
    assert api_for(personas.a_viewer).get("/api/v1/tenants/tenant-b/sla/violations/").status_code == 404
    assert api_for(personas.a_viewer).get("/api/v1/tenants/tenant-a/sla/credits/").status_code == 403
    assert api_for(personas.a_admin).get("/api/v1/tenants/tenant-a/sla/credits/").status_code == 200


def test_a_tenants_policy_is_read_by_its_users_and_replaced_only_by_platform_admins(personas, api_for):
    assert api_for(personas.a_viewer).get("/api/v1/tenants/tenant-a/sla/policy/").json()["source"] == "tier default"
    body = {"name": "Gold", "availability_target": "99.95", "window": "calendar_month", "latency_p99_ms": 2000}
    assert api_for(personas.a_admin).put("/api/v1/tenants/tenant-a/sla/policy/", body, format="json").status_code == 403
    assert api_for(personas.b_admin).get("/api/v1/tenants/tenant-a/sla/policy/").status_code == 404
    admin = api_for(personas.platform_admin)
    bad = admin.put("/api/v1/tenants/tenant-a/sla/policy/", body | {"latency_p50_ms": 5000}, format="json")
    assert bad.status_code == 400 and "latency_p99_ms" in bad.json()["error"]["fields"]
    assert admin.put("/api/v1/tenants/tenant-a/sla/policy/", body, format="json").status_code == 200
    assert api_for(personas.a_viewer).get("/api/v1/tenants/tenant-a/sla/policy/").json()["source"] == "tenant"
    assert admin.delete("/api/v1/tenants/tenant-a/sla/policy/").status_code == 204
    assert not SlaPolicy.objects.filter(tenant=personas.tenant_a).exists()
