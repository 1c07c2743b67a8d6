"""Console pages for regions and deployments: platform admins manage, tenant admins read, others are refused."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.regions import health
from apps.regions.models import Deployment, Region


@pytest.fixture
def setup(personas):
    us = Region.objects.create(id="us-east", name="US East", group="us")
    shared = Deployment.objects.create(name="shared-us", model="sim-small", provider="simulator",
                                       base_url="http://127.0.0.1:9100", api_key="sk-shared-secret", region=us)
    dedicated = Deployment.objects.create(name="a-only", model="sim-small", provider="simulator",
                                          base_url="http://127.0.0.1:9100", region=us, tenant=personas.tenant_a)
    other = Deployment.objects.create(name="b-only", model="sim-small", provider="simulator",
                                      base_url="http://127.0.0.1:9100", region=us, tenant=personas.tenant_b)
    return {"us": us, "shared": shared, "dedicated": dedicated, "other": other}


def test_the_regions_section_in_the_navigation_leads_to_the_regions_page(personas, setup, client_for):
    page = client_for(personas.platform_admin).get("/regions/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/regions/"' in html
    assert "shared-us" in html and "a-only" in html and "US East" in html
    assert "sk-shared-secret" not in html


def test_the_deployment_table_filters_as_an_htmx_fragment(personas, setup, client_for):
    Deployment.objects.create(name="large", model="sim-large", provider="simulator",
                              base_url="http://127.0.0.1:9100", region=setup["us"])
    response = client_for(personas.platform_admin).get(
        "/regions/?model=sim-large", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="deployment-table")
    html = response.content.decode()
    assert "<html" not in html
    assert "large" in html and "shared-us" not in html


def test_platform_admin_creates_a_region_and_a_deployment_from_the_console(personas, setup, client_for):
    client = client_for(personas.platform_admin)
    response = client.post("/regions/new/", {"id": "eu-west", "name": "EU West", "group": "eu", "enabled": "on"})
    assert response.status_code == 302
    response = client.post("/regions/deployments/new/", {
        "name": "eu-sim", "model": "sim-small", "provider": "simulator", "upstream_model": "",
        "base_url": "http://127.0.0.1:9101", "region": "eu-west", "tenant": "", "priority": "20",
        "timeout_seconds": "15", "enabled": "on", "extra_headers": "", "api_key": "sk-from-the-form",
    })
    assert response.status_code == 302, response.content.decode()
    created = Deployment.objects.get(name="eu-sim")
    assert created.api_key == "sk-from-the-form"
    assert created.region_id == "eu-west" and created.tenant_id is None
    edit = client.get(f"/regions/deployments/{created.pk}/").content.decode()
    assert "sk-from-the-form" not in edit
    assert "A key is stored" in edit


def test_the_deployment_form_shows_field_errors_with_a_400(personas, setup, client_for):
    response = client_for(personas.platform_admin).post("/regions/deployments/new/", {
        "name": "bad", "model": "m", "provider": "openai", "base_url": "not a url", "region": "us-east",
        "priority": "1", "timeout_seconds": "10", "extra_headers": "{not json",
    })
    assert response.status_code == 400
    html = response.content.decode()
    assert "Not valid JSON" in html
    response = client_for(personas.platform_admin).post("/regions/deployments/new/", {
        "name": "bad", "model": "m", "provider": "openai", "base_url": "not a url", "region": "us-east",
        "priority": "1", "timeout_seconds": "10", "extra_headers": "",
    })
    assert response.status_code == 400
    assert "Enter an http:// or https:// URL." in response.content.decode()
    assert not Deployment.objects.filter(name="bad").exists()


def test_editing_without_typing_a_key_keeps_the_stored_one(personas, setup, client_for):
    pk = setup["shared"].pk
    response = client_for(personas.platform_admin).post(f"/regions/deployments/{pk}/", {
        "name": "shared-us", "model": "sim-small", "provider": "simulator", "base_url": "http://127.0.0.1:9100",
        "region": "us-east", "tenant": "", "priority": "7", "timeout_seconds": "30", "enabled": "on",
        "extra_headers": '{"X-Team": "ml"}', "api_key": "",
    })
    assert response.status_code == 302
    saved = Deployment.objects.get(pk=pk)
    assert saved.priority == 7 and saved.extra_headers == {"X-Team": "ml"}
    assert saved.api_key == "sk-shared-secret"


def test_toggling_a_deployment_swaps_its_row_and_is_audited(personas, setup, client_for):
    pk = setup["shared"].pk
    response = client_for(personas.platform_admin).post(f"/regions/deployments/{pk}/toggle/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith(f'<tr id="deployment-{pk}">')
    assert "disabled" in html
    assert Deployment.objects.get(pk=pk).enabled is False
    event = AuditEvent.objects.get(action="regions.deployment.updated")
    assert event.metadata["changes"] == {"enabled": [True, False]}


def test_a_cooling_deployment_is_shown_and_can_be_put_back_in_rotation(personas, setup, client_for,
                                                                      django_capture_on_commit_callbacks):
    pk = setup["shared"].pk
    for _ in range(3):
        health.record_failure(pk)
    client = client_for(personas.platform_admin)
    assert "cooling down" in client.get("/regions/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/regions/deployments/{pk}/end-cooldown/")
    assert response.status_code == 302
    assert not health.is_cooling_down(pk)
    assert AuditEvent.objects.filter(action="regions.deployment.cooldown_ended", resource_id=str(pk)).exists()


def test_deleting_a_region_in_use_is_refused_with_a_message(personas, setup, client_for):
    response = client_for(personas.platform_admin).post("/regions/r/us-east/delete/", follow=True)
    assert "still has 3 deployment(s)" in response.content.decode()
    assert Region.objects.filter(pk="us-east").exists()


def test_non_platform_users_cannot_reach_the_management_pages(personas, setup, client_for):
    client = client_for(personas.a_admin)
    pk = setup["dedicated"].pk
    for url in ("/regions/new/", "/regions/deployments/new/", f"/regions/deployments/{pk}/", "/regions/r/us-east/edit/"):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/regions/deployments/{pk}/toggle/").status_code == 403
    assert Deployment.objects.get(pk=pk).enabled is True


def test_a_tenant_admin_sees_the_dedicated_deployments_of_their_tenant_read_only(personas, setup, client_for):
    client = client_for(personas.a_admin)
    html = client.get("/regions/tenants/tenant-a/").content.decode()
    assert "a-only" in html
    assert "b-only" not in html and "shared-us" not in html
    assert "/toggle/" not in html
    index = client.get("/regions/").content.decode()
    assert "a-only" in index and "b-only" not in index


def test_the_tenant_deployments_page_is_404_for_outsiders_and_403_for_members(personas, setup, client_for):
    assert client_for(personas.b_admin).get("/regions/tenants/tenant-a/").status_code == 404
    assert client_for(personas.a_member).get("/regions/tenants/tenant-a/").status_code == 403
    assert client_for(personas.platform_admin).get("/regions/tenants/tenant-a/").status_code == 200


def test_signed_out_visitors_are_sent_to_sign_in(db, client):
    response = client.get("/regions/")
    assert response.status_code == 302
    assert "/accounts/signin/" in response["Location"]
