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
    itself (each protocol module does that); it only reloads the user, and refuses an inactive one."""

    def authenticate(self, request, **kwargs):
        return None
