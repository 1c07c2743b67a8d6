"""API keys through the management API and the console: shown once, stored hashed, scoped to
the tenant (another tenant's key is a 404, a member without the role gets 403), revocable."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from apps.gateway import services
from apps.gateway.models import ApiKey

pytestmark = pytest.mark.django_db


def url(tenant_id, pk=None):
    base = f"/api/v1/tenants/{tenant_id}/api-keys/"
    return f"{base}{pk}/" if pk else base


def test_tenant_admin_creates_a_key_shown_once_and_stored_only_as_its_hash(api_for, personas):
    response = api_for(personas.a_admin).post(url("tenant-a"), {"name": "search", "user": personas.a_member.pk,
                                                                  "requests_per_minute": 30}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["key"]
    assert secret.startswith(body["prefix"] + "_") and body["prefix"].startswith("sy_live_")
    assert response["Cache-Control"] == "no-store"
    with connection.cursor() as cursor:
        cursor.execute("SELECT hashed_key FROM gateway_apikey WHERE id = %s", [body["id"]])
        (stored,) = cursor.fetchone()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    listed = api_for(personas.a_admin).get(url("tenant-a")).json()
    assert "key" not in listed["results"][0]
    assert secret not in str(listed)
    detail = api_for(personas.a_admin).get(url("tenant-a", body["id"])).json()
    assert "key" not in detail and detail["requests_per_minute"] == 30


def test_creating_a_key_is_audited_without_the_secret(api_for, personas):
    from apps.audit.models import AuditEvent

    response = api_for(personas.a_admin).post(url("tenant-a"), {"name": "audited"}, format="json")
    event = AuditEvent.objects.get(action="api_key.create", tenant_id="tenant-a")
    assert event.metadata["prefix"] == response.json()["prefix"]
    assert response.json()["key"] not in str(event.metadata)


def test_bad_input_gets_400_with_field_messages(api_for, personas):
    response = api_for(personas.a_admin).post(url("tenant-a"), {"name": "", "user": personas.b_admin.pk,
                                                                  "requests_per_minute": -1}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert {"name", "requests_per_minute"} <= set(fields) or {"name", "user"} <= set(fields)


def test_outsider_gets_404_for_another_tenants_keys(api_for, personas):
    key, _ = services.create_api_key(actor=personas.a_admin, tenant=personas.tenant_a, name="a")
    client = api_for(personas.b_admin)
    assert client.get(url("tenant-a")).status_code == 404
    assert client.get(url("tenant-a", key.pk)).status_code == 404
    assert client.post(url("tenant-a", key.pk) + "revoke/").status_code == 404
    assert client.get(url("tenant-b", key.pk)).status_code == 404


def test_a_member_without_the_admin_role_gets_403(api_for, personas):
    for user in (personas.a_member, personas.a_viewer, personas.a_auditor):
        assert api_for(user).get(url("tenant-a")).status_code == 403
        assert api_for(user).post(url("tenant-a"), {"name": "x"}, format="json").status_code == 403


def test_revoking_through_the_api_records_when_and_who(api_for, personas):
    from apps.audit.models import AuditEvent

    key, _ = services.create_api_key(actor=personas.a_admin, tenant=personas.tenant_a, name="a")
    response = api_for(personas.a_admin).post(url("tenant-a", key.pk) + "revoke/")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == personas.a_admin
    assert AuditEvent.objects.filter(action="api_key.revoke", resource_id=str(key.pk)).exists()
    assert api_for(personas.a_admin).delete(url("tenant-a", key.pk)).status_code == 204


def test_console_shows_the_new_key_once_and_lists_only_its_prefix(client_for, personas):
    client = client_for(personas.a_admin)
    page = client.post("/gateway/tenant-a/api-keys/", {"name": "console key", "user": personas.a_member.pk})
    assert page.status_code == 200
    key = ApiKey.objects.get(name="console key")
    html = page.content.decode()
    start = html.index('id="new-api-key">') + len('id="new-api-key">')
    secret = html[start:html.index("<", start)]
    assert hashlib.sha256(secret.encode()).hexdigest() == key.hashed_key
    again = client.get("/gateway/tenant-a/api-keys/").content.decode()
    assert key.prefix in again and secret not in again


def test_console_revoke_and_scoping(client_for, personas):
    key, _ = services.create_api_key(actor=personas.a_admin, tenant=personas.tenant_a, name="a")
    assert client_for(personas.b_admin).get("/gateway/tenant-a/api-keys/").status_code == 404
    assert client_for(personas.a_member).get("/gateway/tenant-a/api-keys/").status_code == 403
    assert client_for(personas.b_admin).post(f"/gateway/tenant-a/api-keys/{key.pk}/revoke/").status_code == 404
    response = client_for(personas.a_admin).post(f"/gateway/tenant-a/api-keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_usage_pages_render_for_members_and_hide_other_tenants(client_for, personas):
    assert client_for(personas.a_viewer).get("/gateway/tenant-a/usage/").status_code == 200
    assert client_for(personas.b_admin).get("/gateway/tenant-a/usage/").status_code == 404
    assert client_for(personas.a_auditor).get("/gateway/tenant-a/usage/").status_code == 403
    assert client_for(personas.a_member).get("/gateway/usage/").status_code == 200


def test_platform_admin_sets_prices_and_others_only_read_them(api_for, personas):
    body = {"model": "sim-small", "input_per_1k": "0.15", "output_per_1k": "0.6", "currency": "USD",
            "effective_from": "2026-01-01T00:00:00Z"}
    assert api_for(personas.a_admin).post("/api/v1/model-prices/", body, format="json").status_code == 403
    response = api_for(personas.platform_admin).post("/api/v1/model-prices/", body, format="json")
    assert response.status_code == 201, response.content
    listed = api_for(personas.a_member).get("/api/v1/model-prices/?model=sim-small").json()
    assert listed["results"][0]["input_per_1k"] == "0.150000"
    bad = api_for(personas.platform_admin).post("/api/v1/model-prices/", {**body, "input_per_1k": "-1"}, format="json")
    assert bad.status_code == 400 and "input_per_1k" in bad.json()["error"]["fields"]
