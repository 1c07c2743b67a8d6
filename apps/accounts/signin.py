"""The sign-in flow's last step, shared by every method (password, SAML, OIDC, LDAP)."""

from __future__ import annotations

from django.contrib.auth import login


def complete_sign_in(request, user, *, method: str, backend: str = "apps.accounts.backends.EmailPasswordBackend") -> None:
    """Log the user in with a fresh session key and remember how they signed in."""
    login(request, user, backend=backend)  # login() cycles the session key
    request.session["signin_method"] = method
