"""Roles and what each may do. The one table every permission check reads."""

from django.db import models


class Role(models.TextChoices):
    TENANT_ADMIN = "tenant_admin", "Tenant admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"
    AUDITOR = "auditor", "Auditor"


PLATFORM_ADMIN = "platform_admin"

# action -> tenant roles that may perform it. Platform admins may do everything everywhere.
# "view" is the floor: any membership sees that the tenant exists; without it an object is a 404.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(Role.values),
    "manage": frozenset({Role.TENANT_ADMIN}),
    "generate": frozenset({Role.TENANT_ADMIN, Role.MEMBER}),
    "view_usage": frozenset({Role.TENANT_ADMIN, Role.MEMBER, Role.VIEWER}),
    "view_dashboards": frozenset({Role.TENANT_ADMIN, Role.MEMBER, Role.VIEWER, Role.AUDITOR}),
    "audit": frozenset({Role.TENANT_ADMIN, Role.AUDITOR}),
    "billing": frozenset({Role.TENANT_ADMIN}),
}


def roles_for(action: str) -> frozenset[str]:
    try:
        return PERMISSIONS[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}") from None


def tenant_ids_for(user, action: str = "view") -> list[str]:
    """Tenants where this user's role allows the action (empty for anonymous users)."""
    if not getattr(user, "is_authenticated", False):
        return []
    allowed = roles_for(action)
    return [tenant_id for tenant_id, role in user.tenant_roles().items() if role in allowed]


def user_can(user, tenant_id, action: str = "view") -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_platform_admin", False):
        return True
    role = user.tenant_roles().get(str(tenant_id))
    return role is not None and role in roles_for(action)
