"""Console sessions: idle and absolute timeouts, the user's own session list, sign-out of
other sessions, admins ending a user's sessions, and disabling a user."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from apps.accounts.models import UserSession
from apps.audit.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _signed_in(sign_in, email):
    client = Client()
    assert sign_in(client, email, PASSWORD).status_code == 302
    return client


def _age(client, **seconds_ago):
    session = client.session
    for name, ago in seconds_ago.items():
        session[name] = time.time() - ago
    session.save()


def test_an_idle_session_is_signed_out(personas, sign_in, redis_client, settings):
    client = _signed_in(sign_in, "member@a.test")
    _age(client, last_activity=settings.SESSION_IDLE_SECONDS + 5)
    response = client.get("/tenants/")
    assert response.status_code == 302 and "expired=idle" in response["Location"]
    assert client.get("/tenants/").status_code == 302
    assert UserSession.objects.get(user=personas.a_member).end_reason == "idle_timeout"


def test_a_session_past_its_absolute_lifetime_is_signed_out_even_when_active(personas, sign_in, redis_client, settings):
    client = _signed_in(sign_in, "member@a.test")
    _age(client, signed_in_at=settings.SESSION_COOKIE_AGE + 5, last_activity=1)
    assert "expired=absolute" in client.get("/tenants/")["Location"]


def test_an_expired_api_session_gets_a_401_in_the_error_shape(personas, sign_in, redis_client, settings):
    client = _signed_in(sign_in, "member@a.test")
    _age(client, last_activity=settings.SESSION_IDLE_SECONDS + 5)
    response = client.get("/api/v1/tenants/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"


def test_a_user_sees_their_sessions_and_signs_out_the_others(personas, sign_in, redis_client):
    phone = _signed_in(sign_in, "member@a.test")
    laptop = _signed_in(sign_in, "member@a.test")
    page = laptop.get("/accounts/security/")
    assert page.status_code == 200 and page.content.count(b"<td>password</td>") == 2
    laptop.post("/accounts/security/sessions/end-others/")
    assert phone.get("/tenants/").status_code == 302
    assert laptop.get("/tenants/").status_code == 200
    assert AuditEvent.objects.filter(action="session.end_others").exists()


def test_a_user_cannot_end_another_users_session(personas, sign_in, redis_client):
    victim = _signed_in(sign_in, "viewer@a.test")
    attacker = _signed_in(sign_in, "member@a.test")
    target = UserSession.objects.get(user=personas.a_viewer)
    assert attacker.post(f"/accounts/security/sessions/{target.pk}/end/").status_code == 404
    assert victim.get("/tenants/").status_code == 200


def test_a_tenant_admin_ends_all_sessions_of_a_member(personas, sign_in, client_for, redis_client):
    member = _signed_in(sign_in, "member@a.test")
    admin = client_for(personas.a_admin)
    assert admin.post(f"/accounts/users/{personas.a_member.pk}/sessions/", {"action": "end_all"}).status_code == 302
    assert member.get("/tenants/").status_code == 302
    assert AuditEvent.objects.filter(action="session.end_all").exists()


def test_an_admin_of_another_tenant_gets_404_for_a_user_and_a_member_gets_403(personas, client_for, redis_client):
    assert client_for(personas.b_admin).get(f"/accounts/users/{personas.a_member.pk}/sessions/").status_code == 404
    assert client_for(personas.a_viewer).get(f"/accounts/users/{personas.a_member.pk}/sessions/").status_code == 403


def test_disabling_a_user_ends_their_sessions_and_tokens(personas, sign_in, client_for, redis_client):
    from apps.accounts import tokens

    member = _signed_in(sign_in, "member@a.test")
    issued = tokens.issue_for_user(user=personas.a_member)
    admin = client_for(personas.platform_admin)
    admin.post(f"/accounts/users/{personas.a_member.pk}/sessions/", {"action": "disable"})
    personas.a_member.refresh_from_db()
    assert not personas.a_member.is_active
    assert member.get("/tenants/").status_code == 302
    assert tokens.principal_for(issued.access_token) is None
    assert AuditEvent.objects.filter(action="user.disable").exists()


def test_signing_out_ends_the_listed_session(personas, sign_in, redis_client):
    client = _signed_in(sign_in, "member@a.test")
    client.post("/accounts/signout/")
    assert UserSession.objects.get(user=personas.a_member).ended_at is not None


def test_the_api_lists_a_users_own_sessions(personas, sign_in, api_for, redis_client):
    _signed_in(sign_in, "member@a.test")
    rows = api_for(personas.a_member).get("/api/v1/auth/sessions").json()
    assert len(rows) == 1 and rows[0]["method"] == "password"


def test_an_admin_ends_a_users_sessions_and_tokens_through_the_api(personas, sign_in, api_for, redis_client):
    from apps.accounts import tokens

    member = _signed_in(sign_in, "member@a.test")
    issued = tokens.issue_for_user(user=personas.a_member)
    response = api_for(personas.a_admin).post(f"/api/v1/auth/users/{personas.a_member.pk}/end-sessions")
    assert response.status_code == 200 and response.json() == {"sessions_ended": 1, "token_families_revoked": 1}
    assert member.get("/tenants/").status_code == 302
    assert tokens.principal_for(issued.access_token) is None
    assert api_for(personas.b_admin).post(f"/api/v1/auth/users/{personas.a_member.pk}/end-sessions").status_code == 404
    assert api_for(personas.a_viewer).post(f"/api/v1/auth/users/{personas.a_member.pk}/end-sessions").status_code == 403


def test_expired_credentials_are_purged(personas, redis_client):
    from datetime import timedelta

    from django.utils import timezone

    from apps.accounts import services, tokens
    from apps.accounts.models import AccessToken, RefreshToken

    issued = tokens.issue_for_user(user=personas.a_member)
    AccessToken.objects.filter(family=issued.family).update(expires_at=timezone.now() - timedelta(days=31))
    assert services.purge_expired_credentials()["access_tokens"] == 1
    assert RefreshToken.objects.filter(family=issued.family).count() == 1


def test_disabling_a_user_with_a_plain_save_also_ends_their_sessions(personas, sign_in, redis_client):
    member = _signed_in(sign_in, "member@a.test")
    personas.a_member.is_active = False
    personas.a_member.save()
    assert member.get("/tenants/").status_code == 302
    assert UserSession.objects.get(user=personas.a_member).end_reason == "user_disabled"


def test_the_operator_command_ends_a_users_sessions_and_can_disable_them(personas, sign_in, redis_client):
    from django.core.management import CommandError, call_command

    member = _signed_in(sign_in, "member@a.test")
    call_command("end_user_sessions", "Member@A.test")
    assert member.get("/tenants/").status_code == 302
    call_command("end_user_sessions", "member@a.test", "--disable")
    personas.a_member.refresh_from_db()
    assert not personas.a_member.is_active
    with pytest.raises(CommandError):
        call_command("end_user_sessions", "nobody@a.test")
