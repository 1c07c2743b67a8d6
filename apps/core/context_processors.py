"""Template context every console page needs: navigation and the signed-in user's tenants."""

NAV = [
    ("tenants", "Tenants", "tenants:list"),
    ("usage", "Usage", "gateway:usage"),
    ("sla", "SLA", "sla:fleet"),
    ("audit", "Audit", "audit:search"),
    ("billing", "Billing", "billing:index"),
    ("regions", "Regions", "regions:index"),
    ("settings", "Settings", "core:settings"),
]


def _active_section(match) -> str:
    if match is None:
        return ""
    return match.kwargs.get("name") if match.url_name == "section" or str(match.url_name).startswith("section-") \
        else (match.app_name or "")


def console(request):
    user = getattr(request, "user", None)
    is_platform_admin = bool(user and user.is_authenticated and user.is_platform_admin)
    return {
        "nav_items": NAV,
        "is_platform_admin": is_platform_admin,
        "active_section": _active_section(getattr(request, "resolver_match", None)),
    }
