"""In a real browser: the tenant SLA dashboard draws its Plotly charts and, without a reload,
shows new requests once they are stored and rolled up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import PASSWORD, add_member, make_tenant, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sign_in(page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/accounts/signin/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def usage_records(tenant_id: str, count: int, *, end: datetime, failures: int = 0) -> list[dict]:
    """Records shaped as the gateway queues them, written through its own batch writer."""
    records = []
    for index in range(count):
        failed = index < failures
        records.append({
            "request_id": uuid.uuid4().hex, "created_at": (end - timedelta(seconds=20 * index + 1)).isoformat(),
            "tenant_id": tenant_id, "api_key_id": None, "user_id": None, "department_id": None, "project_id": None,
            "model": "sim-small", "deployment_id": None, "region_id": "us-east", "endpoint": "generate",
            "stream": False, "status": "upstream_error" if failed else "success", "status_code": 502 if failed else 200,
            "error_code": "", "prompt_tokens": 12, "completion_tokens": 30, "cost": "0.00002000", "currency": "USD",
            "unpriced": False, "latency_ms": 180.0 + index, "ttft_ms": None, "attempts": 1, "tags": {},
        })
    return records


def test_the_dashboard_renders_its_charts_and_updates_when_new_requests_arrive(live_server, page, screenshot):
    from apps.core.roles import Role
    from apps.gateway.usage import write_records
    from apps.sla.tasks import rollup_usage

    tenant = make_tenant("globex", name="Globex")
    viewer = make_user("viewer@globex.test")
    add_member(tenant, viewer, Role.VIEWER)
    now = datetime.now(UTC)
    write_records(usage_records(tenant.pk, 40, end=now, failures=2))
    rollup_usage(lookback_minutes=30)

    sign_in(page, live_server.url, viewer.email)
    page.goto(f"{live_server.url}/sla/{tenant.pk}/?range=24h")
    page.wait_for_function("() => document.body.dataset.slaDrawn")
    for chart in ("chart-availability", "chart-latency", "chart-traffic", "chart-budget"):
        assert page.locator(f"#{chart} .main-svg").count() >= 1, chart
    assert page.inner_text("#sla-requests") == "40"
    traffic_total = "() => document.getElementById('chart-traffic').data.reduce((s, t) => s + t.y.reduce((a, b) => a + b, 0), 0)"
    assert page.evaluate(traffic_total) == 40
    first_draw = page.evaluate("() => document.body.dataset.slaDrawn")

    # New requests arrive: stored by the gateway's writer, rolled up by the SLA task.
    write_records(usage_records(tenant.pk, 25, end=datetime.now(UTC)))
    rollup_usage(lookback_minutes=30)

    page.wait_for_function("() => document.getElementById('sla-requests').innerText.trim() === '65'", timeout=15000)
    page.wait_for_function(f"() => document.body.dataset.slaDrawn !== '{first_draw}'")
    assert page.evaluate(traffic_total) == 65
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # never reloaded
    path = screenshot("sla-dashboard")
    assert path.stat().st_size > 10_000

    # The fleet view: a tenant user sees their own tenant only, with its chart.
    from apps.sla.services import evaluate_all

    other = make_tenant("initech", name="Initech")
    write_records(usage_records(other.pk, 10, end=datetime.now(UTC)))
    rollup_usage(lookback_minutes=30)
    evaluate_all()
    page.goto(f"{live_server.url}/sla/")
    page.wait_for_function("() => document.body.dataset.slaDrawn")
    assert page.locator("#chart-fleet .main-svg").count() >= 1
    table = page.inner_text("#fleet-table")
    assert "Globex" in table and "Initech" not in table
    screenshot("sla-fleet")
