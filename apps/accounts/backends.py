"""Authentication backends: local email and password, and the session backend SSO sign-ins use."""

from django.contrib.auth.backends import ModelBackend


class EmailPasswordBackend(ModelBackend):
    """Django's ModelBackend keyed by lower-cased email; inactive users never authenticate."""

    def authenticate(self, request, username=None, password=None, email=None, **kwargs):
        email = (email or username or "").strip().lower()
        if not email or password is None:
            return None
        return super().authenticate(request, username=email, password=password, **kwargs)


class ExternalIdentityBackend(ModelBackend):
    """Holds sessions of users who signed in through SAML, OIDC or LDAP. It authenticates nobody
    itself (each protocol module does that); it only reloads the user, and refuses an inactive one.
    One subclass per method, so the session and the audit trail's sign-in event name the method."""

    def authenticate(self, request, **kwargs):
        return None


class SAMLSignInBackend(ExternalIdentityBackend):
    pass


class OIDCSignInBackend(ExternalIdentityBackend):
    pass


class LDAPSignInBackend(ExternalIdentityBackend):
    pass


BACKEND_FOR_METHOD = {
    "password": "apps.accounts.backends.EmailPasswordBackend",
    "saml": "apps.accounts.backends.SAMLSignInBackend",
    "oidc": "apps.accounts.backends.OIDCSignInBackend",
    "ldap": "apps.accounts.backends.LDAPSignInBackend",
}
