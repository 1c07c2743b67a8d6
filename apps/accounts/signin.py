"""The sign-in flow's shared steps: which method a user's email leads to, and the last step
every method (password, SAML, OIDC, LDAP) ends with."""

from __future__ import annotations

from django.contrib.auth import login

from apps.audit.services import record_event
from apps.core.middleware import client_ip

from . import bruteforce, sessions
from .backends import BACKEND_FOR_METHOD
from .models import IdentityProvider

PASSWORD_BACKEND = "apps.accounts.backends.EmailPasswordBackend"


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower() if "@" in email else ""


def provider_for_email(email: str) -> IdentityProvider | None:
    domain = email_domain(email)
    if not domain:
        return None
    return IdentityProvider.objects.filter(enabled=True, email_domains__contains=[domain]).select_related("tenant").first()


def complete_sign_in(request, user, *, method: str, backend: str | None = None, mfa_verified: bool = False,
                     tenant_id: str | None = None) -> None:
    """Log the user in with a fresh session key and remember how they signed in.

    When MFA applies and was not already proven (an IdP's assertion), the session is marked
    unverified and the MFA middleware sends the user to verification before any page. The
    sign-in itself is audited by the audit app's user_logged_in receiver ("auth.sign_in", with
    the backend, which names the method).
    """
    # authenticate() would set user.backend; SSO users never pass through it, and the audit
    # receiver reads the attribute to name the method.
    user.backend = backend or BACKEND_FOR_METHOD[method]
    login(request, user, backend=user.backend)  # login() cycles the session key
    sessions.start(request, user, method=method, mfa_verified=mfa_verified)
    bruteforce.record_success(identifier=user.email)
    if mfa_verified:
        record_event(action="mfa.verify", tenant_id=tenant_id, actor=user, resource_type="user", resource_id=str(user.pk),
                     request=request, metadata={"method": f"{method}_idp_asserted"})


def record_failure(request, *, identifier: str, method: str, reason: str, tenant_id: str | None = None,
                   audit: bool = True) -> bool:
    """Count and audit a failed sign-in; returns True when it triggered a lockout. Pass
    audit=False where django.contrib.auth.authenticate() already failed: the audit app's
    user_login_failed receiver has recorded that one."""
    locked = bruteforce.record_failure(identifier=identifier, ip=client_ip(request))
    if audit:
        record_event(action="auth.sign_in_failed", tenant_id=tenant_id, actor=None, resource_type="user", result="failure",
                     request=request, metadata={"method": method, "reason": reason, "email_domain": email_domain(identifier)})
    if locked:
        record_event(action="auth.lockout", tenant_id=tenant_id, actor=None, resource_type="user", result="denied",
                     request=request, metadata={"method": method, "email_domain": email_domain(identifier)})
    return locked
