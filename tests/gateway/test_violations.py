"""Quota violations (Redis counters flushed to Postgres, one audit event per tenant-minute, deduplicated
alerts, the console page) and the Prometheus metrics (cheap, correct, summed across processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.core.test_notifications import Receiver


def run(coro):
    from apps.core.redis import reset_clients

    try:
        return asyncio.run(coro)
    finally:
        reset_clients()


def refuse(n, *, tenant_id="tenant-a", key_id=None, reason="requests_per_minute", limit=600, scope="tenant"):
    """n refusals recorded the way the async pipeline does: the call returns an awaitable task."""
    from apps.gateway.violations import record_violation

    async def go():
        tasks = [record_violation(tenant_id=tenant_id, key_id=key_id, reason=reason, limit=limit,
                                  request_id=f"req-{i}", scope=scope) for i in range(n)]
        assert all(asyncio.isfuture(t) for t in tasks)
        await asyncio.gather(*tasks)

    run(go())


@pytest.fixture
def eager_celery(settings):
    from console.celery import app

    settings.SWITCHYARD_NOTIFY_ALLOW_PRIVATE = True
    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = old


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def later() -> float:
    """A moment at which the current minute counts as closed (past its grace)."""
    return time.time() + 180


def test_refusals_are_counted_per_minute_and_written_with_absolute_counts(personas, redis_client):
    from apps.core.models import QuotaViolation
    from apps.gateway.violations import flush_violations

    refuse(25)
    refuse(3, key_id="key-1", reason="max_concurrent", limit=5, scope="key")
    assert flush_violations()["minutes"] == 1
    assert flush_violations()["minutes"] == 1  # the minute is still open: written again, same numbers
    rows = {(v.scope, v.key_id, v.reason): v for v in QuotaViolation.objects.filter(tenant_id="tenant-a")}
    assert rows[("tenant", "", "requests_per_minute")].count == 25
    assert rows[("tenant", "", "requests_per_minute")].limit == 600
    assert rows[("key", "key-1", "max_concurrent")].count == 3
    assert rows[("key", "key-1", "max_concurrent")].last_request_id.startswith("req-")
    refuse(5)
    flush_violations()
    assert QuotaViolation.objects.get(tenant_id="tenant-a", reason="requests_per_minute").count == 30


def test_a_hammering_tenant_gets_one_audit_event_per_minute_not_one_per_refusal(db, redis_client):
    from apps.audit.models import AuditEvent
    from apps.core.models import QuotaViolation
    from apps.gateway.violations import flush_violations
    from tests.conftest import make_tenant

    make_tenant("hammer")
    # Refusals are grouped by the minute they happen in: keep them all in one.
    while time.time() % 60 > 50:
        time.sleep(0.5)
    refuse(300, tenant_id="hammer")
    refuse(4, tenant_id="hammer", reason="tokens_per_month", limit=1000)
    flush_violations(now=later())
    flush_violations(now=later())  # run twice: still one event
    (event,) = AuditEvent.objects.filter(action="gateway.quota_violation", tenant_id="hammer")
    assert event.result == "denied"
    assert event.metadata["refusals"] == {"tenant.requests_per_minute": 300, "tenant.tokens_per_month": 4}
    assert event.metadata["total"] == 304
    assert all(v.audited for v in QuotaViolation.objects.filter(tenant_id="hammer"))
    assert not list(redis_client.scan_iter(match="*viol:hammer:*")), "a closed minute leaves Redis"


def test_violations_alert_the_tenants_channels_at_most_once_per_limit_per_period(
    personas, redis_client, receiver, eager_celery, django_capture_on_commit_callbacks
):
    from apps.core.notifications import create_channel
    from apps.gateway.violations import flush_violations

    create_channel(tenant_id="tenant-a", kind="webhook", name="ops", target=receiver.url(),
                   events=["quota.violation"])
    create_channel(tenant_id="tenant-b", kind="webhook", name="b-ops", target=receiver.url("/b"))
    with django_capture_on_commit_callbacks(execute=True):
        refuse(50)
        flush_violations()
        refuse(50)
        flush_violations(now=later())
        refuse(10, reason="max_concurrent", limit=50)
        flush_violations()
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [(b["tenant_id"], b["event"]) for b in bodies] == [("tenant-a", "quota.violation")] * 2
    assert {b["title"] for b in bodies} == {"Quota reached: requests per minute", "Quota reached: max concurrent"}
    assert bodies[0]["link"].endswith("/gateway/tenant-a/violations/")


def test_violations_of_an_unknown_tenant_are_dropped_without_error(db, redis_client):
    from apps.core.models import QuotaViolation
    from apps.gateway.violations import flush_violations

    refuse(3, tenant_id="no-such-tenant")
    flush_violations(now=later())
    assert not QuotaViolation.objects.exists()
    assert not list(redis_client.scan_iter(match="*viol:no-such-tenant:*"))


def test_recording_outside_an_event_loop_counts_at_once(personas, redis_client):
    from apps.core.models import QuotaViolation
    from apps.gateway.violations import flush_violations, record_violation

    assert record_violation(tenant_id="tenant-a", key_id=None, reason="key.requests_per_day", limit=10,
                            request_id="sync-1") is None
    flush_violations()
    violation = QuotaViolation.objects.get(tenant_id="tenant-a")
    assert (violation.scope, violation.reason, violation.count) == ("key", "requests_per_day", 1)


def test_recording_with_redis_down_neither_raises_nor_blocks(settings, db):
    from apps.core.redis import reset_clients
    from apps.gateway.violations import record_violation

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    reset_clients()
    try:
        started = time.perf_counter()
        refuse(3)
        assert record_violation(tenant_id="t", key_id=None, reason="max_concurrent", limit=1, request_id="r") is None
        assert time.perf_counter() - started < 3
    finally:
        reset_clients()


def test_the_violations_page_shows_counts_and_live_quota_use(personas, client_for, redis_client):
    from apps.gateway import quotas
    from apps.gateway.violations import flush_violations

    refuse(7, reason="requests_per_day", limit=100)
    flush_violations()
    refuse(2, reason="max_concurrent", limit=50)  # not flushed yet: shown as live counts
    run(quotas.admit(tenant_id="tenant-a", tenant_limits=quotas.QuotaLimits(requests_per_minute=600),
                     estimated_tokens=10, request_id="x"))
    page = client_for(personas.a_viewer).get("/gateway/tenant-a/violations/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "requests_per_day" in html and ">7<" in html
    assert "max_concurrent ×2" in html  # live, from Redis
    assert "Requests per minute" in html
    partial = client_for(personas.a_viewer).get("/gateway/tenant-a/violations/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and b"<html" not in partial.content


def test_the_violations_page_is_404_for_outsiders_and_403_without_the_usage_role(personas, client_for):
    assert client_for(personas.b_admin).get("/gateway/tenant-a/violations/").status_code == 404
    assert client_for(personas.a_auditor).get("/gateway/tenant-a/violations/").status_code == 403
    assert client_for(personas.platform_admin).get("/gateway/tenant-a/violations/").status_code == 200


# --- Metrics ---------------------------------------------------------------------------------


def sample(name: str, labels: dict) -> float:
    from apps.gateway.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observe_request_counts_requests_errors_tokens_cost_and_latency():
    from apps.gateway import metrics

    labels = {"tenant": "m-tenant", "model": "sim-small"}
    before = sample("switchyard_gateway_requests_total", {**labels, "status": "200"})
    metrics.observe_request("m-tenant", "sim-small", 200, 0.120, 0.030, 11, 22, Decimal("0.0042"))
    metrics.observe_request("m-tenant", "sim-small", 502, 0.500, None, 11, 0, None)
    assert sample("switchyard_gateway_requests_total", {**labels, "status": "200"}) == before + 1
    assert sample("switchyard_gateway_errors_total", {**labels, "status": "502"}) >= 1
    assert sample("switchyard_gateway_errors_total", {**labels, "status": "200"}) == 0
    assert sample("switchyard_gateway_tokens_total", {**labels, "direction": "input"}) >= 22
    assert sample("switchyard_gateway_tokens_total", {**labels, "direction": "output"}) >= 22
    assert sample("switchyard_gateway_cost_total", labels) == pytest.approx(0.0042)
    assert sample("switchyard_gateway_request_latency_seconds_bucket", {**labels, "le": "0.25"}) >= 1
    assert sample("switchyard_gateway_time_to_first_token_seconds_count", labels) >= 1


def test_observe_request_costs_less_than_20_microseconds():
    from apps.gateway import metrics

    cost = Decimal("0.000123")
    for _ in range(100):
        metrics.observe_request("fast", "sim-small", 200, 0.01, 0.005, 10, 20, cost)
    n, rounds = 2000, []
    # The best of several rounds: the cost of the call itself, not of other work on a shared machine.
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(n):
            metrics.observe_request("fast", "sim-small", 200, 0.01, 0.005, 10, 20, cost)
        rounds.append((time.perf_counter() - started) / n)
    assert min(rounds) < 20e-6, f"{min(rounds) * 1e6:.1f} µs per call"


def test_quota_refusals_and_redis_outages_are_counted():
    from apps.gateway import metrics

    before = sample("switchyard_gateway_quota_refusals_total", {"tenant": "r-tenant", "reason": "max_concurrent"})
    metrics.count_quota_refusal("r-tenant", "max_concurrent")
    metrics.count_quota_refusal("r-tenant", "max_concurrent")
    outages = sample("switchyard_gateway_quota_backend_unavailable_total", {"outcome": "refused"})
    metrics.count_redis_outage()
    after = sample("switchyard_gateway_quota_refusals_total", {"tenant": "r-tenant", "reason": "max_concurrent"})
    assert after == before + 2
    assert sample("switchyard_gateway_quota_backend_unavailable_total", {"outcome": "refused"}) == outages + 1


def test_the_metrics_endpoint_serves_prometheus_text(client, settings):
    from apps.gateway import metrics

    settings.SWITCHYARD_METRICS_TOKEN = None
    metrics.observe_request("scrape-tenant", "sim-large", 200, 0.2, 0.1, 1, 2, Decimal("0.01"))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'switchyard_gateway_requests_total{model="sim-large",status="200",tenant="scrape-tenant"}' in text
    assert "switchyard_gateway_request_latency_seconds_bucket" in text


def test_the_metrics_endpoint_requires_the_scrape_token_when_one_is_set(client, settings):
    settings.SWITCHYARD_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


WORKER = """
import os, sys
from decimal import Decimal
import django
django.setup()
from apps.gateway import metrics
n = int(sys.argv[1])
for _ in range(n):
    metrics.observe_request("mp-tenant", "sim-small", 200, 0.05, 0.01, 3, 4, Decimal("0.5"))
metrics.count_quota_refusal("mp-tenant", "requests_per_minute")
if len(sys.argv) > 2:
    sys.stdout.write(metrics.collect().decode())
"""


def test_with_a_multiprocess_directory_any_process_reports_the_sum_of_all(tmp_path):
    env = {**os.environ, "SWITCHYARD_METRICS_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "console.settings"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    root = str(Path(__file__).resolve().parents[2])
    for n in (3, 5):
        subprocess.run([sys.executable, "-c", WORKER, str(n)], env=env, cwd=root, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", WORKER, "2", "report"], env=env, cwd=root, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert 'switchyard_gateway_requests_total{model="sim-small",status="200",tenant="mp-tenant"} 10.0' in out
    assert 'switchyard_gateway_quota_refusals_total{reason="requests_per_minute",tenant="mp-tenant"} 3.0' in out
    assert 'switchyard_gateway_tokens_total{direction="output",model="sim-small",tenant="mp-tenant"} 40.0' in out


def test_violation_rows_older_than_the_retention_are_purged(personas, settings):
    from datetime import UTC, datetime, timedelta

    from apps.core.models import QuotaViolation
    from apps.gateway.violations import purge_old_violations

    settings.SWITCHYARD_VIOLATION_RETENTION_DAYS = 30
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for days in (1, 29, 31, 400):
        QuotaViolation.objects.create(tenant_id="tenant-a", minute=now - timedelta(days=days),
                                      reason="requests_per_minute", count=1)
    assert purge_old_violations(now=now) == 2
    assert QuotaViolation.objects.count() == 2


def test_a_flush_already_running_elsewhere_makes_another_skip(personas, redis_client):
    from apps.core.models import QuotaViolation
    from apps.core.redis import key
    from apps.gateway.violations import flush_violations

    refuse(2)
    held = redis_client.lock(key("viol", "flush-lock"), timeout=30)
    assert held.acquire(blocking=False)
    try:
        assert flush_violations().get("skipped") == 1
        assert not QuotaViolation.objects.exists()
    finally:
        held.release()
    assert flush_violations()["minutes"] == 1
