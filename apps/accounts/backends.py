"""Authentication backends: local email and password (SSO backends live beside it)."""

from django.contrib.auth.backends import ModelBackend


class EmailPasswordBackend(ModelBackend):
    """Django's ModelBackend keyed by lower-cased email; inactive users never authenticate."""

    def authenticate(self, request, username=None, password=None, email=None, **kwargs):
        email = (email or username or "").strip().lower()
        if not email or password is None:
            return None
        return super().authenticate(request, username=email, password=password, **kwargs)
