"""Fixtures for the accounts tests: TOTP codes at chosen time steps, enrolled users."""

from __future__ import annotations

import time

import pyotp
import pytest


def code_at(secret: str, steps_from_now: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_from_now)


@pytest.fixture
def enrol(db):
    """enrol(user) -> (secret, recovery_codes): a confirmed authenticator for the user."""
    from apps.accounts import mfa

    def make(user):
        device = mfa.start_enrolment(user=user)
        codes = mfa.confirm_enrolment(user=user, code=code_at(device.secret, -1))
        assert codes
        return device.secret, codes

    return make


@pytest.fixture
def sign_in(db):
    """sign_in(client, email, password) -> the response of the sign-in form."""

    def post(client, email, password, **extra):
        return client.post("/accounts/signin/", {"email": email, "password": password, **extra})

    return post
