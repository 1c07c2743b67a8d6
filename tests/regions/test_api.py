"""The regions and deployments API: who may read and write, validation, credentials never returned, audit."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.regions import health
from apps.regions.models import Deployment, Region

SECRET = "sk-live-upstream-credential-0042"


@pytest.fixture
def regions(db):
    return {
        "us": Region.objects.create(id="us-east", name="US East", group="us"),
        "eu": Region.objects.create(id="eu-west", name="EU West", group="eu"),
    }


@pytest.fixture
def deployments(personas, regions):
    return {
        "shared": Deployment.objects.create(name="shared-us", model="gpt-4o-mini", provider="openai",
                                            base_url="https://api.openai.com/v1", api_key=SECRET, region=regions["us"]),
        "a": Deployment.objects.create(name="a-dedicated", model="gpt-4o-mini", provider="simulator",
                                       base_url="http://127.0.0.1:9100", region=regions["eu"],
                                       tenant=personas.tenant_a, api_key="sk-a"),
        "b": Deployment.objects.create(name="b-dedicated", model="gpt-4o-mini", provider="simulator",
                                       base_url="http://127.0.0.1:9100", region=regions["us"],
                                       tenant=personas.tenant_b, api_key="sk-b"),
    }


def new_deployment(**overrides) -> dict:
    body = {"name": "claude-eu", "model": "claude-3-5-haiku", "provider": "anthropic", "base_url": "https://api.anthropic.com",
            "api_key": SECRET, "region": "eu-west", "priority": 10, "timeout_seconds": 20}
    body.update(overrides)
    return body


def test_platform_admin_creates_a_deployment_and_the_key_is_never_returned(personas, regions, api_for):
    api = api_for(personas.platform_admin)
    response = api.post("/api/v1/deployments/", new_deployment(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["has_api_key"] is True
    assert "api_key" not in body
    assert SECRET not in response.content.decode()
    assert body["tenant"] is None and body["region"] == "eu-west"
    listed = api.get("/api/v1/deployments/").content.decode()
    assert SECRET not in listed
    deployment = Deployment.objects.get(pk=body["id"])
    assert deployment.api_key == SECRET
    event = AuditEvent.objects.get(action="regions.deployment.created")
    assert event.resource_id == body["id"]
    assert event.tenant_id is None
    assert SECRET not in str(event.metadata)
    assert event.metadata["has_api_key"] is True


def test_the_credential_is_encrypted_at_rest_and_bound_to_its_row(personas, regions, api_for):
    response = api_for(personas.platform_admin).post("/api/v1/deployments/", new_deployment(), format="json")
    pk = response.json()["id"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM regions_deployment WHERE id = %s", [pk])
        [raw] = cursor.fetchone()
    assert raw and SECRET not in raw
    assert Deployment.objects.get(pk=pk).api_key == SECRET


def test_updating_without_a_key_keeps_it_and_an_empty_key_clears_it(personas, deployments, api_for):
    api = api_for(personas.platform_admin)
    url = f"/api/v1/deployments/{deployments['shared'].pk}/"
    assert api.patch(url, {"priority": 5}, format="json").status_code == 200
    assert Deployment.objects.get(pk=deployments["shared"].pk).api_key == SECRET
    assert api.patch(url, {"api_key": "sk-rotated"}, format="json").status_code == 200
    assert Deployment.objects.get(pk=deployments["shared"].pk).api_key == "sk-rotated"
    response = api.patch(url, {"api_key": ""}, format="json")
    assert response.json()["has_api_key"] is False
    assert Deployment.objects.get(pk=deployments["shared"].pk).api_key is None
    changes = [e.metadata["changes"] for e in AuditEvent.objects.filter(action="regions.deployment.updated").order_by("seq")]
    assert changes[0] == {"priority": [100, 5]}
    assert changes[1] == {"api_key": ["(changed)", "(set)"]}
    assert "sk-rotated" not in str(changes)


def test_moving_a_deployment_to_a_tenant_re_encrypts_its_key_for_that_tenant(personas, deployments, api_for):
    url = f"/api/v1/deployments/{deployments['shared'].pk}/"
    response = api_for(personas.platform_admin).patch(url, {"tenant": "tenant-a"}, format="json")
    assert response.status_code == 200, response.json()
    moved = Deployment.objects.get(pk=deployments["shared"].pk)
    assert moved.tenant_id == "tenant-a"
    assert moved.api_key == SECRET
    assert AuditEvent.objects.filter(action="regions.deployment.updated", tenant_id="tenant-a").exists()


def test_bad_input_is_a_400_with_the_field_named(personas, regions, api_for):
    api = api_for(personas.platform_admin)
    cases = {
        "base_url": new_deployment(base_url="ftp://nope"),
        "provider": new_deployment(provider="mystery"),
        "region": new_deployment(region="mars-1"),
        "timeout_seconds": new_deployment(timeout_seconds=0),
        "extra_headers": new_deployment(extra_headers=["not", "a", "dict"]),
    }
    for field, body in cases.items():
        response = api.post("/api/v1/deployments/", body, format="json")
        assert response.status_code == 400, (field, response.content)
        assert field in response.json()["error"]["fields"], (field, response.json())


def test_a_dedicated_deployment_must_sit_in_its_tenants_residency(personas, regions, api_for):
    personas.tenant_a.data_residency = "eu"
    personas.tenant_a.save()
    response = api_for(personas.platform_admin).post(
        "/api/v1/deployments/", new_deployment(region="us-east", tenant="tenant-a"), format="json")
    assert response.status_code == 400
    assert "region" in response.json()["error"]["fields"]
    assert "European Union" in response.json()["error"]["message"]


def test_a_duplicate_name_is_a_400(personas, deployments, api_for):
    response = api_for(personas.platform_admin).post("/api/v1/deployments/", new_deployment(name="shared-us"), format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


def test_a_tenant_admin_lists_only_the_deployments_dedicated_to_their_tenant(personas, deployments, api_for):
    response = api_for(personas.a_admin).get("/api/v1/deployments/")
    assert response.status_code == 200
    assert [d["name"] for d in response.json()["results"]] == ["a-dedicated"]
    Deployment.objects.filter(pk=deployments["a"].pk).update(extra_headers={"X-Org-Token": "org-secret"})
    detail = api_for(personas.a_admin).get(f"/api/v1/deployments/{deployments['a'].pk}/")
    assert detail.status_code == 200
    assert "sk-a" not in detail.content.decode()
    assert detail.json()["extra_headers"] == {"X-Org-Token": "********"}


def test_a_member_sees_no_deployments_and_gets_403_on_their_tenants_one(personas, deployments, api_for):
    api = api_for(personas.a_member)
    assert api.get("/api/v1/deployments/").json()["results"] == []
    assert api.get(f"/api/v1/deployments/{deployments['a'].pk}/").status_code == 403


def test_another_tenants_deployment_and_the_shared_pool_are_404_for_a_tenant_admin(personas, deployments, api_for):
    api = api_for(personas.a_admin)
    for name in ("b", "shared"):
        pk = deployments[name].pk
        assert api.get(f"/api/v1/deployments/{pk}/").status_code == 404
        assert api.patch(f"/api/v1/deployments/{pk}/", {"priority": 1}, format="json").status_code == 404
        assert api.delete(f"/api/v1/deployments/{pk}/").status_code == 404


def test_a_tenant_admin_cannot_change_even_their_own_deployment(personas, deployments, api_for):
    api = api_for(personas.a_admin)
    response = api.patch(f"/api/v1/deployments/{deployments['a'].pk}/", {"priority": 1}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert api.post("/api/v1/deployments/", new_deployment(), format="json").status_code == 403
    assert api.post("/api/v1/regions/", {"id": "ap-south", "name": "AP", "group": "apac"}, format="json").status_code == 403


def test_anonymous_callers_are_refused(db, regions, client):
    assert client.get("/api/v1/deployments/").status_code in (401, 403)
    assert client.get("/api/v1/regions/").status_code in (401, 403)


def test_a_malformed_deployment_id_is_a_404(personas, api_for):
    assert api_for(personas.platform_admin).get("/api/v1/deployments/not-a-uuid/").status_code == 404


def test_the_api_shows_whether_a_deployment_is_cooling_down(personas, deployments, api_for):
    for _ in range(3):
        health.record_failure(deployments["shared"].pk)
    body = api_for(personas.platform_admin).get(f"/api/v1/deployments/{deployments['shared'].pk}/").json()
    assert body["cooling_down"] is True


def test_regions_are_readable_by_any_member_and_written_by_platform_admins(personas, regions, api_for):
    listed = api_for(personas.a_viewer).get("/api/v1/regions/").json()["results"]
    assert {r["id"] for r in listed} == {"us-east", "eu-west"}
    api = api_for(personas.platform_admin)
    created = api.post("/api/v1/regions/", {"id": "ap-south", "name": "AP South", "group": "apac"}, format="json")
    assert created.status_code == 201, created.json()
    assert api.post("/api/v1/regions/", {"id": "ap-south", "name": "x", "group": "apac"}, format="json").status_code == 400
    assert api.post("/api/v1/regions/", {"id": "x1", "name": "x", "group": "any"}, format="json").status_code == 400
    assert api.patch("/api/v1/regions/ap-south/", {"enabled": False}, format="json").json()["enabled"] is False
    assert api.patch("/api/v1/regions/ap-south/", {"id": "renamed"}, format="json").status_code == 400
    actions = set(AuditEvent.objects.filter(resource_type="region").values_list("action", flat=True))
    assert actions == {"regions.region.created", "regions.region.updated"}


def test_a_region_with_deployments_cannot_be_deleted(personas, deployments, api_for):
    api = api_for(personas.platform_admin)
    response = api.delete("/api/v1/regions/us-east/")
    assert response.status_code == 400
    assert "still has 2 deployment(s)" in response.json()["error"]["message"]
    assert Region.objects.filter(pk="us-east").exists()
    empty = Region.objects.create(id="ap-east", name="AP East", group="apac")
    assert api.delete(f"/api/v1/regions/{empty.pk}/").status_code == 204
    assert AuditEvent.objects.filter(action="regions.region.deleted", resource_id="ap-east").exists()


def test_deleting_a_deployment_is_audited_in_its_owners_chain(personas, deployments, api_for):
    pk = deployments["a"].pk
    assert api_for(personas.platform_admin).delete(f"/api/v1/deployments/{pk}/").status_code == 204
    assert not Deployment.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.get(action="regions.deployment.deleted")
    assert event.tenant_id == "tenant-a" and event.resource_id == str(pk)
