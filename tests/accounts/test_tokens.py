"""POST /api/v1/auth/token: client credentials, password + TOTP and refresh grants; rotation,
reuse detection, revocation and the bearer authentication class."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.accounts import tokens
from apps.accounts.models import AccessToken, RefreshToken
from apps.audit.models import AuditEvent
from tests.accounts.conftest import code_at
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _token(data):
    return APIClient().post("/api/v1/auth/token", data, format="json")


def _bearer(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_member_gets_an_hour_long_access_token_with_a_password(personas, redis_client):
    response = _token({"grant_type": "password", "email": "member@a.test", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    who = _bearer(body["access_token"]).get("/api/v1/auth/whoami")
    assert who.status_code == 200 and who.json()["email"] == "member@a.test"
    assert AuditEvent.objects.filter(action="token.issue", result="success").exists()


def test_tokens_are_stored_only_as_digests(personas, redis_client):
    body = _token({"grant_type": "password", "email": "member@a.test", "password": PASSWORD}).json()
    assert not AccessToken.objects.filter(token_hash=body["access_token"]).exists()
    assert AccessToken.objects.filter(token_hash=tokens.digest(body["access_token"])).exists()


def test_a_user_with_mfa_needs_a_current_totp_code(personas, enrol, redis_client):
    secret, _ = enrol(personas.a_member)
    without = _token({"grant_type": "password", "email": "member@a.test", "password": PASSWORD})
    assert without.status_code == 401
    with_code = _token({"grant_type": "password", "email": "member@a.test", "password": PASSWORD, "totp": code_at(secret, 0)})
    assert with_code.status_code == 200
    replayed = _token({"grant_type": "password", "email": "member@a.test", "password": PASSWORD, "totp": code_at(secret, 0)})
    assert replayed.status_code == 401


def test_an_admin_without_mfa_cannot_get_a_token(personas, redis_client):
    response = _token({"grant_type": "password", "email": "admin@a.test", "password": PASSWORD})
    assert response.status_code == 403


def test_wrong_credentials_get_401_in_the_error_shape(personas, redis_client):
    response = _token({"grant_type": "password", "email": "member@a.test", "password": "wrong-wrong-wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_missing_fields_get_400_with_field_messages(db, redis_client):
    response = _token({"grant_type": "client_credentials"})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"client_id", "client_secret"}
    assert _token({"grant_type": "magic"}).status_code == 400


def test_a_service_client_gets_a_token_scoped_to_its_tenant(personas, api_for, redis_client):
    created = api_for(personas.a_admin).post("/api/v1/service-clients/", {"tenant": "tenant-a", "name": "ci", "role": "viewer"}, format="json")
    assert created.status_code == 201
    creds = created.json()
    body = _token({"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": creds["client_secret"]}).json()
    client = _bearer(body["access_token"])
    assert client.get("/api/v1/auth/whoami").json() == {"kind": "service_client", "client_id": creds["client_id"], "tenant": "tenant-a", "role": "viewer"}
    listed = api_for(personas.a_admin).get("/api/v1/service-clients/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert all(row["client_secret"] is None for row in rows)


def test_an_outsider_gets_404_for_another_tenants_service_client(personas, api_for, redis_client):
    client, _ = tokens.create_service_client(tenant_id="tenant-a", name="ci", role="member")
    assert api_for(personas.b_admin).get(f"/api/v1/service-clients/{client.pk}/").status_code == 404
    assert api_for(personas.b_admin).post("/api/v1/service-clients/", {"tenant": "tenant-a", "name": "x"}, format="json").status_code == 404


def test_a_wrong_client_secret_is_refused(personas, redis_client):
    client, _ = tokens.create_service_client(tenant_id="tenant-a", name="ci", role="member")
    assert _token({"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "sycs_wrong"}).status_code == 401


def test_a_refresh_token_rotates_on_use(personas, redis_client):
    first = tokens.issue_for_user(user=personas.a_member)
    second = _token({"grant_type": "refresh_token", "refresh_token": first.refresh_token}).json()
    assert second["refresh_token"] != first.refresh_token
    assert _bearer(second["access_token"]).get("/api/v1/auth/whoami").status_code == 200


def test_reusing_an_old_refresh_token_revokes_the_whole_family(personas, redis_client):
    first = tokens.issue_for_user(user=personas.a_member)
    second = _token({"grant_type": "refresh_token", "refresh_token": first.refresh_token}).json()
    assert _bearer(second["access_token"]).get("/api/v1/auth/whoami").status_code == 200
    reuse = _token({"grant_type": "refresh_token", "refresh_token": first.refresh_token})
    assert reuse.status_code == 401
    assert _bearer(second["access_token"]).get("/api/v1/auth/whoami").status_code == 401
    assert _token({"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}).status_code == 401
    assert RefreshToken.objects.filter(family=first.family, revoked_at__isnull=True).count() == 0
    assert AuditEvent.objects.filter(action="token.reuse_detected").exists()


def test_revoking_a_token_ends_its_family_even_when_cached(personas, redis_client):
    issued = tokens.issue_for_user(user=personas.a_member)
    client = _bearer(issued.access_token)
    assert client.get("/api/v1/auth/whoami").status_code == 200  # now cached in Redis
    assert APIClient().post("/api/v1/auth/revoke", {"token": issued.refresh_token}, format="json").status_code == 200
    assert client.get("/api/v1/auth/whoami").status_code == 401
    assert AuditEvent.objects.filter(action="token.revoke").exists()


def test_an_expired_access_token_is_refused(personas, redis_client):
    from datetime import timedelta

    from django.utils import timezone

    issued = tokens.issue_for_user(user=personas.a_member)
    AccessToken.objects.filter(token_hash=tokens.digest(issued.access_token)).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _bearer(issued.access_token).get("/api/v1/auth/whoami").status_code == 401


def test_a_made_up_bearer_token_is_refused_and_other_bearer_kinds_are_left_alone(db, redis_client):
    assert _bearer("sya_made-up").get("/api/v1/auth/whoami").status_code == 401
    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().get("/api/v1/auth/whoami", HTTP_AUTHORIZATION="Bearer sk-some-api-key")
    assert tokens.BearerTokenAuthentication().authenticate(request) is None


def test_a_suspended_tenants_service_client_token_stops_working(personas, redis_client):
    client, secret = tokens.create_service_client(tenant_id="tenant-a", name="ci", role="member")
    issued = tokens.issue_for_client(client_id=client.client_id, client_secret=secret)
    personas.tenant_a.status = "suspended"
    personas.tenant_a.save()
    assert tokens.principal_for(issued.access_token) is None
    assert _token({"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": secret}).status_code == 401
