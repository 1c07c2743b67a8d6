"""The status page, failover policies and the failover timeline in the console (platform admins only)."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.regions import healthchecks
from apps.regions.models import Deployment, FailoverEvent, FailoverPolicy, Region


@pytest.fixture
def setup(db, personas):
    us = Region.objects.create(id="us-east", name="US East", group="us")
    eu = Region.objects.create(id="eu-west", name="EU West", group="eu")
    Region.objects.create(id="ap-south", name="AP South", group="apac")
    us_dep = Deployment.objects.create(name="small@us", model="sim-small", provider="simulator",
                                       base_url="http://127.0.0.1:9", api_key="sk", region=us)
    Deployment.objects.create(name="small@eu", model="sim-small", provider="simulator",
                              base_url="http://127.0.0.1:9", api_key="sk", region=eu)
    healthchecks._record([healthchecks.Probe(str(us_dep.pk), True, 12.5, "healthy")], 1.0e9)
    FailoverEvent.objects.create(model="sim-small", kind="failover", from_region="us-east", to_region="eu-west",
                                 reason="Primary region us-east has no healthy deployment of sim-small.",
                                 hook_results=[{"hook": "webhook", "ok": True, "detail": "HTTP 204"}])
    FailoverEvent.objects.create(model="other", kind="failback", from_region="eu-west", to_region="us-east",
                                 reason="back")
    return personas


def test_the_status_page_shows_regions_deployments_health_latency_primaries_and_recent_events(setup, client_for):
    client = client_for(setup.platform_admin)
    response = client.post("/regions/status/policies/", {"model": "sim-small", "primary_region": "us-east",
                                                          "failback_after_seconds": "90", "enabled": "on"})
    assert response.status_code == 302
    page = client.get("/regions/status/")
    assert page.status_code == 200
    text = page.content.decode()
    for expected in ("US East", "EU West", "AP South", "small@us", "12.5 ms", "sim-small", "90 s",
                     "has no healthy deployment", "webhook: HTTP 204", 'hx-trigger="every 5s"'):
        assert expected in text, expected
    partial = client.get("/regions/status/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200
    assert b"<html" not in partial.content and b"small@us" in partial.content


def test_saving_a_policy_is_audited_and_bad_input_is_400_with_the_field_named(setup, client_for):
    client = client_for(setup.platform_admin)
    bad_region = client.post("/regions/status/policies/", {"model": "sim-small", "primary_region": "ap-south",
                                                           "failback_after_seconds": "60", "enabled": "on"})
    assert bad_region.status_code == 400
    assert "ap-south has no deployment of sim-small" in bad_region.content.decode()
    bad_number = client.post("/regions/status/policies/", {"model": "sim-small", "primary_region": "us-east",
                                                           "failback_after_seconds": "-5"})
    assert bad_number.status_code == 400
    assert not FailoverPolicy.objects.exists()
    client.post("/regions/status/policies/", {"model": "sim-small", "primary_region": "us-east",
                                              "failback_after_seconds": "60", "enabled": "on"})
    policy = FailoverPolicy.objects.get()
    assert (policy.primary_region_id, policy.active_region_id, policy.failback_after_seconds) == ("us-east", "us-east", 60)
    event = AuditEvent.objects.get(action="regions.failover_policy.created")
    assert event.actor_id == str(setup.platform_admin.pk)
    assert client.post("/regions/status/policies/sim-small/delete/").status_code == 302
    assert not FailoverPolicy.objects.exists()
    assert AuditEvent.objects.filter(action="regions.failover_policy.deleted").count() == 1
    assert client.post("/regions/status/policies/nothing/delete/").status_code == 404


def test_the_failover_timeline_lists_events_newest_first_and_filters_by_model(setup, client_for):
    client = client_for(setup.platform_admin)
    page = client.get("/regions/status/events/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.index("back") < text.index("has no healthy deployment")
    filtered = client.get("/regions/status/events/", {"model": "sim-small"}).content.decode()
    assert "has no healthy deployment" in filtered and "failback" not in filtered.split("<tbody>")[1]


@pytest.mark.parametrize("persona", ["a_admin", "a_viewer", "b_admin"])
def test_tenant_users_cannot_see_or_change_region_failover(setup, client_for, persona):
    client = client_for(getattr(setup, persona))
    assert client.get("/regions/status/").status_code == 403
    assert client.get("/regions/status/events/").status_code == 403
    assert client.post("/regions/status/policies/", {"model": "sim-small", "primary_region": "us-east",
                                                     "failback_after_seconds": "60"}).status_code == 403
    assert not FailoverPolicy.objects.exists()


def test_platform_admins_manage_policies_and_read_events_and_region_health_through_the_api(setup, api_for):
    client = api_for(setup.platform_admin)
    created = client.post("/api/v1/failover/policies/", {"model": "sim-small", "primary_region": "us-east",
                                                         "failback_after_seconds": 45}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["active_region"] == "us-east"
    bad = client.post("/api/v1/failover/policies/", {"model": "sim-large", "primary_region": "eu-west"},
                      format="json")
    assert bad.status_code == 400
    assert "primary_region" in bad.json()["error"]["fields"]
    changed = client.patch("/api/v1/failover/policies/sim-small/", {"failback_after_seconds": 300}, format="json")
    assert changed.status_code == 200 and changed.json()["failback_after_seconds"] == 300
    health = client.get("/api/v1/failover/policies/sim-small/health/").json()
    assert health["order"][0] == "us-east"
    assert {r["region"] for r in health["regions"]} == {"us-east", "eu-west"}
    events = client.get("/api/v1/failover/events/", {"model": "sim-small"}).json()
    rows = events["results"] if isinstance(events, dict) else events
    assert [e["kind"] for e in rows] == ["failover"]
    assert client.delete("/api/v1/failover/policies/sim-small/").status_code == 204
    assert AuditEvent.objects.filter(action__startswith="regions.failover_policy.").count() == 3


@pytest.mark.parametrize("persona", ["a_admin", "b_admin"])
def test_tenant_users_get_403_from_the_failover_api(setup, api_for, persona):
    client = api_for(getattr(setup, persona))
    assert client.get("/api/v1/failover/policies/").status_code == 403
    assert client.get("/api/v1/failover/events/").status_code == 403
    assert client.post("/api/v1/failover/policies/", {"model": "sim-small", "primary_region": "us-east"},
                       format="json").status_code == 403
