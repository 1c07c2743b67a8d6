"""Process health, readiness, the console home and the placeholder sections."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from .redis import get_redis


@never_cache
def healthz(request):
    """The process is alive and serving; depends on nothing else."""
    return JsonResponse({"status": "ok"})


def check_dependencies() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["postgres"] = f"unavailable: {exc.__class__.__name__}"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {exc.__class__.__name__}"
    return checks


@never_cache
def readyz(request):
    """Ready to take traffic: Postgres and Redis answer. 503 names what is down."""
    checks = check_dependencies()
    down = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not down else "unavailable", "checks": checks}
    if down:
        body["down"] = down
    return JsonResponse(body, status=503 if down else 200)


@login_required
def home(request):
    return redirect("tenants:list")


SECTIONS = {
    "usage": ("Usage", "Requests, tokens and latency per tenant, model, department and project, from the gateway's usage records."),
    "sla": ("SLA", "Per-tenant SLA policies, compliance, error budgets, burn-rate alerts and live dashboards."),
    "audit": ("Audit", "The encrypted, hash-chained audit trail: search, export, verification and compliance reports."),
    "billing": ("Billing", "Model prices, cost allocation and chargeback, invoices and budgets."),
    "regions": ("Regions", "Regions and model deployments, their health, failover and failback."),
}


# The settings hub: per-tenant pages (url name, label, role action needed) and platform pages.
TENANT_SETTINGS = [
    ("accounts:provider-list", "Identity providers (SAML, OIDC, LDAP)", "manage"),
    ("core:notifications", "Notification channels", "manage"),
    ("keys:keyring", "Encryption keys", "audit"),
    ("gateway:api-keys", "API keys", "manage"),
    ("billing:budgets", "Budgets", "billing"),
    ("sla:policy", "SLA policy", "manage"),
    ("tenants:edit", "Limits and settings", "manage"),
]
PLATFORM_SETTINGS = [
    ("tenants:pools", "Resource pools"),
    ("regions:index", "Regions and deployments"),
    ("billing:prices", "Model prices"),
    ("integrations:index", "API gateway exports"),
    ("keys:index", "Encryption keys of every tenant"),
]


@login_required
def settings_hub(request):
    from django.apps import apps
    from django.urls import NoReverseMatch, reverse

    from .roles import user_can

    def link(name, *args):
        try:
            return reverse(name, args=args)
        except NoReverseMatch:
            return ""

    tenants = apps.get_model("tenants", "Tenant").objects.restrict(request.user, "view").order_by("name")[:200]
    rows = []
    for tenant in tenants:
        links = [(label, link(name, tenant.pk)) for name, label, action in TENANT_SETTINGS
                 if user_can(request.user, tenant.pk, action)]
        rows.append({"tenant": tenant, "links": [(label, url) for label, url in links if url]})
    platform = [(label, link(name)) for name, label in PLATFORM_SETTINGS] if request.user.is_platform_admin else []
    return render(request, "core/settings.html", {
        "rows": rows, "platform": [(label, url) for label, url in platform if url],
        "security_url": link("accounts:security"),
    })


@login_required
def section(request, name: str):
    title, description = SECTIONS[name]
    return render(request, "core/section.html", {"title": title, "description": description, "section": name})
