"""Template context every console page needs: navigation and the signed-in user's tenants."""

NAV = [
    ("tenants", "Tenants", "tenants:list"),
    ("usage", "Usage", "core:section-usage"),
    ("sla", "SLA", "core:section-sla"),
    ("audit", "Audit", "core:section-audit"),
    ("billing", "Billing", "core:section-billing"),
    ("regions", "Regions", "core:section-regions"),
    ("settings", "Settings", "core:section-settings"),
]


def console(request):
    user = getattr(request, "user", None)
    is_platform_admin = bool(user and user.is_authenticated and user.is_platform_admin)
    return {
        "nav_items": NAV,
        "is_platform_admin": is_platform_admin,
        "active_section": getattr(getattr(request, "resolver_match", None), "app_name", "") or "",
    }
