"""TOTP MFA: enrolment, single-use codes and recovery codes, enforcement for admins and
enterprise tenants, and re-authentication before MFA changes."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from django.test import Client

from apps.accounts import mfa
from apps.accounts.models import RecoveryCode, TOTPDevice
from apps.audit.models import AuditEvent
from tests.accounts.conftest import code_at
from tests.conftest import PASSWORD, add_member, make_tenant, make_user

pytestmark = pytest.mark.django_db


def test_a_totp_code_is_refused_on_second_use(personas, enrol):
    secret, _ = enrol(personas.a_member)
    code = code_at(secret, 0)
    assert mfa.verify(user=personas.a_member, code=code) == "totp"
    assert mfa.verify(user=personas.a_member, code=code) is None


def test_an_older_code_is_refused_after_a_newer_one_was_used(personas, enrol):
    secret, _ = enrol(personas.a_member)
    assert mfa.verify(user=personas.a_member, code=code_at(secret, 1)) == "totp"
    assert mfa.verify(user=personas.a_member, code=code_at(secret, 0)) is None


def test_a_code_from_far_outside_the_window_is_refused(personas, enrol):
    secret, _ = enrol(personas.a_member)
    assert mfa.verify(user=personas.a_member, code=code_at(secret, 5)) is None


def test_recovery_codes_are_single_use(personas, enrol):
    _, codes = enrol(personas.a_member)
    assert mfa.verify(user=personas.a_member, code=codes[0]) == "recovery_code"
    assert mfa.verify(user=personas.a_member, code=codes[0]) is None
    assert mfa.remaining_recovery_codes(personas.a_member) == len(codes) - 1


def test_secrets_and_recovery_codes_are_not_stored_in_clear(personas, enrol):
    secret, codes = enrol(personas.a_member)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM accounts_totpdevice WHERE user_id = %s", [personas.a_member.pk])
        (stored,) = cursor.fetchone()
    assert secret not in stored
    hashes = set(RecoveryCode.objects.filter(user=personas.a_member).values_list("code_hash", flat=True))
    assert not any(code in hashes or code.replace("-", "") in hashes for code in codes)


def test_enrolment_shows_an_inline_qr_code_and_confirms_with_a_code(personas, sign_in, redis_client):
    user = make_user("new@a.test")
    client = Client()
    sign_in(client, "new@a.test", PASSWORD)
    page = client.get("/accounts/mfa/enrol/")
    assert page.status_code == 200
    assert b"<svg" in page.content
    secret = TOTPDevice.objects.get(user=user).secret
    response = client.post("/accounts/mfa/enrol/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 200
    assert len(re.findall(rb"<li><code>[0-9a-f]{8}-[0-9a-f]{8}</code></li>", response.content)) == 10
    assert TOTPDevice.objects.get(user=user).confirmed_at is not None
    assert AuditEvent.objects.filter(action="mfa.enrol", result="success").exists()


@pytest.mark.parametrize("persona", ["platform_admin", "a_admin"])
def test_admins_cannot_reach_the_console_without_mfa(personas, sign_in, redis_client, persona):
    user = getattr(personas, persona)
    client = Client()
    assert sign_in(client, user.email, PASSWORD).status_code == 302
    response = client.get("/tenants/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/mfa/enrol/")
    assert client.get("/api/v1/tenants/").status_code == 403


def test_every_user_of_an_enterprise_tenant_must_use_mfa(db, sign_in, redis_client):
    from apps.core.roles import Role

    tenant = make_tenant("big-corp", tier="enterprise")
    viewer = make_user("viewer@big.test")
    add_member(tenant, viewer, Role.VIEWER)
    client = Client()
    sign_in(client, "viewer@big.test", PASSWORD)
    assert client.get("/tenants/")["Location"].startswith("/accounts/mfa/enrol/")


def test_a_tenant_can_require_mfa_of_every_member(db, sign_in, redis_client):
    from apps.core.roles import Role

    tenant = make_tenant("careful", tier="pro", mfa_required=True)
    add_member(tenant, make_user("m@careful.test"), Role.MEMBER)
    client = Client()
    sign_in(client, "m@careful.test", PASSWORD)
    assert client.get("/tenants/").status_code == 302


def test_a_member_of_an_ordinary_tenant_needs_no_mfa(personas, sign_in, redis_client):
    client = Client()
    sign_in(client, "member@a.test", PASSWORD)
    assert client.get("/tenants/").status_code == 200


def test_an_enrolled_admin_verifies_and_gets_a_new_session_key(personas, sign_in, enrol, redis_client):
    secret, _ = enrol(personas.a_admin)
    client = Client()
    sign_in(client, "admin@a.test", PASSWORD)
    assert client.get("/tenants/")["Location"].startswith("/accounts/mfa/verify/")
    before = client.session.session_key
    response = client.post("/accounts/mfa/verify/?next=/tenants/", {"code": code_at(secret, 0)})
    assert response.status_code == 302 and response["Location"] == "/tenants/"
    assert client.session.session_key != before
    assert client.get("/tenants/").status_code == 200


def test_a_reused_code_does_not_pass_verification(personas, sign_in, enrol, redis_client):
    secret, _ = enrol(personas.a_admin)
    code = code_at(secret, 0)
    first, second = Client(), Client()
    sign_in(first, "admin@a.test", PASSWORD)
    sign_in(second, "admin@a.test", PASSWORD)
    assert first.post("/accounts/mfa/verify/", {"code": code}).status_code == 302
    refused = second.post("/accounts/mfa/verify/", {"code": code})
    assert refused.status_code == 400
    assert second.get("/tenants/").status_code == 302


def test_a_recovery_code_passes_verification_once(personas, sign_in, enrol, redis_client):
    _, codes = enrol(personas.a_admin)
    first, second = Client(), Client()
    sign_in(first, "admin@a.test", PASSWORD)
    sign_in(second, "admin@a.test", PASSWORD)
    assert first.post("/accounts/mfa/verify/", {"code": codes[3]}).status_code == 302
    assert second.post("/accounts/mfa/verify/", {"code": codes[3]}).status_code == 400


def test_removing_mfa_requires_recent_reauthentication(personas, sign_in, enrol, redis_client, settings):
    secret, _ = enrol(personas.a_member)
    client = Client()
    sign_in(client, "member@a.test", PASSWORD)
    assert client.post("/accounts/mfa/verify/", {"code": code_at(secret, 0)}).status_code == 302
    session = client.session
    session["reauth_at"] = time.time() - settings.SWITCHYARD_REAUTH_SECONDS - 1
    session.save()
    response = client.post("/accounts/security/mfa/remove/")
    assert response["Location"].startswith("/accounts/reauth/")
    assert TOTPDevice.objects.filter(user=personas.a_member).exists()

    bad = client.post("/accounts/reauth/", {"password": "wrong-password-x", "code": code_at(secret, 1)})
    assert bad.status_code == 400
    good = client.post("/accounts/reauth/", {"password": PASSWORD, "code": code_at(secret, 1)})
    assert good.status_code == 302
    client.post("/accounts/security/mfa/remove/")
    assert not TOTPDevice.objects.filter(user=personas.a_member).exists()
    assert AuditEvent.objects.filter(action="mfa.remove").exists()


def test_changing_email_and_recovery_codes_require_reauthentication(personas, client_for, enrol, redis_client):
    enrol(personas.a_member)
    client = client_for(personas.a_member)
    assert client.get("/accounts/security/email/")["Location"].startswith("/accounts/reauth/")
    assert client.post("/accounts/security/recovery-codes/")["Location"].startswith("/accounts/reauth/")


def test_mfa_code_guessing_locks_out(personas, sign_in, enrol, redis_client, settings):
    settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT = 3
    secret, _ = enrol(personas.a_admin)
    client = Client()
    sign_in(client, "admin@a.test", PASSWORD)
    for _ in range(3):
        client.post("/accounts/mfa/verify/", {"code": "000000"})
    assert client.post("/accounts/mfa/verify/", {"code": code_at(secret, 0)}).status_code == 429


def test_after_reauthentication_a_user_changes_their_email(personas, client_for, redis_client):
    client = client_for(personas.a_member)
    session = client.session
    session["reauth_at"] = time.time()
    session.save()
    assert client.post("/accounts/security/email/", {"email": "admin@a.test"}).status_code == 400
    assert client.post("/accounts/security/email/", {"email": "New@A.test"}).status_code == 302
    personas.a_member.refresh_from_db()
    assert personas.a_member.email == "new@a.test"
    assert AuditEvent.objects.filter(action="user.email_change").exists()


def test_enrolling_long_after_sign_in_asks_for_the_password_again(personas, sign_in, redis_client, settings):
    client = Client()
    sign_in(client, "admin@a.test", PASSWORD)
    session = client.session
    session["reauth_at"] = time.time() - settings.SWITCHYARD_REAUTH_SECONDS - 1
    session.save()
    response = client.get("/accounts/mfa/enrol/")
    assert response["Location"].startswith("/accounts/reauth/")
    assert client.get(response["Location"]).status_code == 200
    back = client.post(response["Location"], {"password": PASSWORD})
    assert back.status_code == 302 and back["Location"] == "/accounts/mfa/enrol/"
    assert client.get("/accounts/mfa/enrol/").status_code == 200
