"""Session policy (idle and absolute timeouts) and MFA enforcement for console sessions."""

from __future__ import annotations

from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from apps.core.errors import error_response

from . import sessions

# Paths a signed-in user without MFA may still reach: the MFA pages themselves, re-authentication
# (an enrolment that waited too long asks for the password again), sign-in and sign-out, static
# files and probes.
_MFA_EXEMPT = ("/accounts/mfa/", "/accounts/reauth/", "/accounts/signout/", "/accounts/signin/", "/accounts/saml/", "/accounts/oidc/", "/static/", "/healthz", "/readyz", "/metrics")


def _is_api(request) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


class SessionPolicyMiddleware:
    """Signs out a session idle longer than SESSION_IDLE_SECONDS or older than SESSION_COOKIE_AGE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            reason = sessions.expired_reason(request)
            if reason:
                sessions.mark_ended(request.session.session_key, f"{reason}_timeout")
                logout(request)
                if _is_api(request):
                    return error_response(401, "Your session has expired; sign in again.", code="session_expired")
                return redirect(f"{reverse('accounts:signin')}?{urlencode({'next': request.get_full_path(), 'expired': reason})}")
        return self.get_response(request)


class MFAEnforcementMiddleware:
    """A user who must use MFA (or has enrolled) reaches nothing but the MFA pages until the
    session has passed MFA: enrolment when there is no authenticator yet, else verification."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and hasattr(request, "session")
            and not request.session.get(sessions.MFA_VERIFIED_AT)
            and not request.path.startswith(_MFA_EXEMPT)
        ):
            enrolled = user.has_confirmed_totp()
            if enrolled or user.mfa_required():
                if _is_api(request):
                    return error_response(403, "Complete multi-factor authentication first.", code="mfa_required")
                target = "accounts:mfa-verify" if enrolled else "accounts:mfa-enrol"
                return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)
