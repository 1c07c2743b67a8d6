"""Reads of the accounts app, scoped to what the asking user may see."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.core.roles import user_can

from .models import IdentityProvider, ServiceClient, User


def identity_providers(user, action: str = "view"):
    return IdentityProvider.objects.restrict(user, action).select_related("tenant")


def service_clients(user, action: str = "view"):
    return ServiceClient.objects.restrict(user, action).select_related("tenant")


def managed_user(actor, user_id) -> User:
    """A user the actor administers: platform admins any; tenant admins the users of their
    tenants. 404 when the actor shares no tenant with the user, 403 when they do but may not
    manage it (or the user is a platform admin)."""
    target = User.objects.filter(pk=user_id).first() if str(user_id).isdigit() else None
    if target is None:
        raise Http404
    if actor.is_platform_admin:
        return target
    shared = set(actor.tenant_roles()) & set(target.tenant_roles())
    if not shared:
        raise Http404
    if target.is_platform_admin or not any(user_can(actor, t, "manage") for t in shared):
        raise PermissionDenied("Your role does not allow this.")
    return target
