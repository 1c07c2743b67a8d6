"""In a real browser: a tenant admin is made to enrol TOTP (QR page), signs out, and signs in
again with a code from the authenticator."""

from __future__ import annotations

import os
import time

import pyotp
import pytest

from apps.core.roles import Role
from tests.conftest import PASSWORD, add_member, make_tenant, make_user

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _sign_in(page, base, email):
    page.goto(f"{base}/accounts/signin/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_an_admin_enrols_totp_signs_out_and_signs_in_with_a_code(live_server, page, screenshot, redis_client):
    tenant = make_tenant("browser-co", name="Browser Co")
    admin = make_user("admin@browser.test")
    add_member(tenant, admin, Role.TENANT_ADMIN)
    base = live_server.url

    _sign_in(page, base, "admin@browser.test")
    page.wait_for_url("**/accounts/mfa/enrol/**")
    assert page.locator(".qr svg").count() == 1
    screenshot("mfa-enrol")
    secret = page.locator("[data-totp-secret]").get_attribute("data-totp-secret")
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    assert page.locator("[data-recovery-codes] li").count() == 10
    page.click("text=Continue")
    page.wait_for_url("**/tenants/**")
    assert "Browser Co" in page.content()

    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/accounts/signin/**")

    _sign_in(page, base, "admin@browser.test")
    page.wait_for_url("**/accounts/mfa/verify/**")
    # The enrolment code's time step is spent; the authenticator's next code is the one to use.
    page.fill("input[name=code]", pyotp.TOTP(secret).at(time.time() + 30))
    page.click("button[type=submit]")
    page.wait_for_url("**/tenants/**")
    assert "Browser Co" in page.content()
    screenshot("mfa-signed-in")


def test_a_wrong_code_keeps_the_admin_out(live_server, page, redis_client):
    from apps.accounts import mfa

    tenant = make_tenant("browser-two", name="Browser Two")
    admin = make_user("admin@two.test")
    add_member(tenant, admin, Role.TENANT_ADMIN)
    device = mfa.start_enrolment(user=admin)
    assert mfa.confirm_enrolment(user=admin, code=pyotp.TOTP(device.secret).now())

    _sign_in(page, live_server.url, "admin@two.test")
    page.wait_for_url("**/accounts/mfa/verify/**")
    page.fill("input[name=code]", "000000")
    page.click("button[type=submit]")
    assert "not right" in page.content()
    page.goto(f"{live_server.url}/tenants/")
    assert "/accounts/mfa/verify/" in page.url
