"""Reads of the accounts app, scoped to what the asking user may see."""

from __future__ import annotations

from .models import IdentityProvider, ServiceClient


def identity_providers(user, action: str = "view"):
    return IdentityProvider.objects.restrict(user, action).select_related("tenant")


def service_clients(user, action: str = "view"):
    return ServiceClient.objects.restrict(user, action).select_related("tenant")
