"""Local password sign-in, method selection and brute-force lockout."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def test_a_member_signs_in_with_a_password_and_gets_a_new_session_key(personas, sign_in, redis_client):
    client = Client()
    client.get("/accounts/signin/")
    before = client.session.session_key
    response = sign_in(client, "member@a.test", PASSWORD)
    assert response.status_code == 302
    assert client.session.session_key != before
    assert client.session["signin_method"] == "password"
    assert client.get("/tenants/").status_code == 200


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(personas, sign_in, redis_client):
    wrong = sign_in(Client(), "member@a.test", "not-the-password")
    unknown = sign_in(Client(), "nobody@a.test", "not-the-password")
    assert wrong.status_code == unknown.status_code == 400
    assert b"The email or password is not right" in wrong.content
    assert b"The email or password is not right" in unknown.content


def test_failures_and_successes_are_audit_events(personas, sign_in, redis_client):
    sign_in(Client(), "member@a.test", "nope-nope-nope")
    sign_in(Client(), "member@a.test", PASSWORD)
    # One event each (the audit app's auth-signal receivers), not one per layer.
    assert AuditEvent.objects.filter(action="auth.sign_in_failed", tenant_id="tenant-a").count() == 1
    assert AuditEvent.objects.get(action="auth.sign_in", tenant_id="tenant-a").metadata["backend"] == "EmailPasswordBackend"


def test_an_account_locks_after_repeated_failures_without_revealing_whether_it_exists(personas, sign_in, redis_client, settings):
    settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT = 3
    for email in ("member@a.test", "ghost@a.test"):
        for _ in range(3):
            sign_in(Client(), email, "wrong-password-here")
        locked = sign_in(Client(), email, PASSWORD)
        assert locked.status_code == 429
        assert b"Too many failed attempts" in locked.content
    assert AuditEvent.objects.filter(action="auth.lockout").count() == 2


def test_a_client_address_locks_after_too_many_failures_across_accounts(personas, sign_in, redis_client, settings):
    settings.SIGNIN_MAX_FAILURES_PER_IP = 4
    for n in range(4):
        sign_in(Client(), f"user{n}@a.test", "wrong-password-here")
    assert sign_in(Client(), "member@a.test", PASSWORD).status_code == 429


def test_a_disabled_user_cannot_sign_in(personas, sign_in, redis_client):
    personas.a_member.is_active = False
    personas.a_member.save()
    assert sign_in(Client(), "member@a.test", PASSWORD).status_code == 400


def test_next_never_leads_off_site(personas, sign_in, redis_client):
    response = sign_in(Client(), "member@a.test", PASSWORD, next="https://evil.example/")
    assert response["Location"] == "/"


def test_a_user_with_a_weak_new_password_gets_field_errors(personas, client_for, redis_client):
    user = make_user("weak@a.test")
    client = client_for(user)
    session = client.session
    import time

    session["reauth_at"] = time.time()
    session.save()
    response = client.post("/accounts/security/password/", {"new_password": "password"})
    assert response.status_code == 400
    assert b"too common" in response.content or b"too short" in response.content
