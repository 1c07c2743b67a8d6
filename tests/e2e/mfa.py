"""Helpers for browser tests that meet the MFA step: enrol a TOTP device the way a user would."""

from __future__ import annotations


def satisfy_mfa_if_asked(page, user) -> None:
    """If the console asks for MFA enrolment or a code after sign-in, complete it with pyotp."""
    if "/mfa" not in page.url:
        return
    import pyotp

    secret_el = page.locator("[data-totp-secret]")
    if secret_el.count():
        secret = secret_el.first.get_attribute("data-totp-secret")
        page.fill("input[name=code]", pyotp.TOTP(secret).now())
        page.click("button[type=submit]")
        if page.locator("[data-recovery-codes]").count():
            page.click("text=Continue")
