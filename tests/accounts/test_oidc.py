"""OIDC sign-in against a real provider on loopback: the happy path, and bad state, nonce,
PKCE verifier, expired or wrongly signed ID tokens refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from django.test import Client

from apps.accounts import oidc, services
from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from tests.accounts.oidc_provider import OIDCProvider

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider() as provider:
        yield provider


@pytest.fixture
def provider(personas, idp, settings, redis_client):
    settings.SITE_URL = "http://testserver"
    idp.behaviour = {}
    return services.create_identity_provider(
        tenant=personas.tenant_a, actor=personas.a_admin, kind="oidc", name="Okta-ish", email_domains=["oidc.test"],
        oidc_issuer=idp.issuer, oidc_client_id=idp.client_id, oidc_client_secret=idp.client_secret,
        role_mapping={"llm-admins": Role.TENANT_ADMIN, "llm-users": Role.MEMBER}, default_role="",
    )


def authorize(client) -> str:
    """Start at Switchyard, pass through the provider's /authorize; returns the callback path."""
    start = client.get("/accounts/oidc/tenant-a/login/")
    assert start.status_code == 302
    params = parse_qs(urlparse(start["Location"]).query)
    assert params["code_challenge_method"] == ["S256"] and params["nonce"] and params["state"]
    back = httpx.get(start["Location"], follow_redirects=False)
    assert back.status_code == 302
    url = urlparse(back.headers["Location"])
    return f"{url.path}?{url.query}"


def _refused(client, response, reason: str):
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.filter(action="auth.sign_in_failed", result="failure").order_by("-pk").first()
    assert reason in event.metadata["reason"], event.metadata["reason"]


def test_a_user_signs_in_through_oidc_with_their_group_mapped_to_a_role(provider):
    client = Client()
    response = client.get(authorize(client))
    assert response.status_code == 302
    user = User.objects.get(email="olga@oidc.test")
    assert user.tenant_roles() == {"tenant-a": Role.MEMBER}
    assert client.get("/tenants/").status_code == 200


def test_the_client_secret_is_encrypted_at_rest(provider, idp):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT oidc_client_secret FROM accounts_identityprovider WHERE id = %s", [provider.pk])
        (stored,) = cursor.fetchone()
    assert idp.client_secret not in stored


def test_a_bad_state_is_refused(provider):
    client = Client()
    path = authorize(client).replace("state=", "state=x")
    _refused(client, client.get(path), "unknown or expired state")


def test_a_state_works_only_once(provider):
    client = Client()
    path = authorize(client)
    assert client.get(path).status_code == 302
    client.post("/accounts/signout/")
    _refused(client, client.get(path), "unknown or expired state")


def test_a_bad_nonce_is_refused(provider, idp):
    idp.behaviour = {"nonce": "not-the-nonce"}
    client = Client()
    _refused(client, client.get(authorize(client)), "nonce mismatch")


def test_a_wrong_pkce_verifier_is_refused_by_the_provider(provider):
    client = Client()
    path = authorize(client)
    session = client.session
    for flow in session[oidc.SESSION_KEY].values():
        flow["verifier"] = "a-different-verifier-" + "x" * 40
    session.save()
    _refused(client, client.get(path), "token endpoint refused the code: 400")


def test_a_missing_pkce_verifier_is_refused(provider):
    client = Client()
    path = authorize(client)
    session = client.session
    for flow in session[oidc.SESSION_KEY].values():
        flow["verifier"] = ""
    session.save()
    _refused(client, client.get(path), "no PKCE verifier")


def test_an_expired_id_token_is_refused(provider, idp):
    idp.behaviour = {"expired": True}
    client = Client()
    _refused(client, client.get(authorize(client)), "ExpiredSignatureError")


def test_an_id_token_signed_with_the_wrong_key_is_refused(provider, idp):
    idp.behaviour = {"wrong_key": True}
    client = Client()
    _refused(client, client.get(authorize(client)), "InvalidSignatureError")


def test_an_id_token_for_another_client_is_refused(provider, idp):
    idp.behaviour = {"aud": "someone-else"}
    client = Client()
    _refused(client, client.get(authorize(client)), "InvalidAudienceError")


def test_an_admin_whose_provider_asserted_mfa_skips_local_mfa(provider, idp):
    idp.user = {**idp.user, "groups": ["llm-admins"]}
    try:
        idp.behaviour = {"amr": ["pwd", "mfa"]}
        client = Client()
        client.get(authorize(client))
        assert client.get("/tenants/").status_code == 200
        idp.behaviour = {}
        other = Client()
        other.get(authorize(other))
        assert other.get("/tenants/")["Location"].startswith("/accounts/mfa/enrol/")
    finally:
        idp.user = {**idp.user, "groups": ["llm-users"]}


def test_test_connection_reads_discovery_and_keys(provider, personas):
    assert services.test_identity_provider(provider=provider, actor=personas.a_admin) == []
