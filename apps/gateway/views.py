"""Console pages: a tenant's API keys (created and revoked by its admins, the secret shown once)
and live usage (HTMX refreshes the table every few seconds)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apps.core.mixins import get_tenant_or_404, is_htmx
from apps.core.roles import tenant_ids_for, user_can

from . import selectors, services
from .forms import ApiKeyForm


@never_cache
@login_required
def api_keys(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    form = ApiKeyForm(request.POST or None, tenant=tenant)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                api_key, secret = services.create_api_key(actor=request.user, tenant=tenant, request=request,
                                                          **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
                status = 400
            else:
                # Rendered, not redirected: the secret must never sit in a session or a URL.
                created = {"key": api_key, "secret": secret}
                form = ApiKeyForm(tenant=tenant)
        else:
            status = 400
    context = {"tenant": tenant, "tab": "api-keys", "can_manage": True, "form": form, "created": created,
               "items": selectors.api_keys_of(request.user, tenant)}
    response = render(request, "gateway/api_keys.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def api_key_revoke(request, tenant_id, pk):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    api_key = get_object_or_404(selectors.api_keys_of(request.user, tenant), pk=pk)
    services.revoke_api_key(actor=request.user, api_key=api_key, request=request)
    messages.success(request, f"Key {api_key.prefix} revoked; it no longer works.")
    return redirect("gateway:api-keys", tenant_id=tenant.pk)


@login_required
def tenant_usage(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "view_usage")
    context = {"tenant": tenant, "tab": "usage", "can_manage": user_can(request.user, tenant.pk, "manage"),
               "summary": selectors.usage_summary(request.user, [tenant.pk]),
               "items": selectors.recent_usage(request.user, tenant)}
    template = "gateway/_usage_tables.html" if is_htmx(request) else "gateway/tenant_usage.html"
    return render(request, template, context)


@login_required
def usage_overview(request):
    tenant_ids = None if request.user.is_platform_admin else tenant_ids_for(request.user, "view_usage")
    context = {"summary": selectors.usage_summary(request.user, tenant_ids)}
    template = "gateway/_usage_summary.html" if is_htmx(request) else "gateway/usage.html"
    return render(request, template, context)
