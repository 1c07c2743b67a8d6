"""Console pages: audit search (HTMX table), one event, exports, compliance report."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from apps.core.mixins import get_tenant_or_404, is_htmx

from .exports import compliance_download, export_response
from .forms import CompliancePeriodForm, EventFilterForm
from .selectors import (
    PLATFORM,
    EventFilters,
    auditable_tenant_ids,
    compliance_report,
    details_of,
    events_for,
    search_events,
    search_page,
)

PAGE_SIZE = 50


def _require_auditor(user) -> list[str] | None:
    """Tenants the user may audit (None = all); 403 for a user who may audit none."""
    allowed = auditable_tenant_ids(user)
    if allowed is not None and not allowed:
        raise PermissionDenied("Your role does not include audit on any tenant.")
    return allowed


def _check_tenant(user, tenant: str | None) -> None:
    """Another tenant is a 404; the user's own tenant without the audit role is a 403."""
    if not tenant:
        return
    if tenant == PLATFORM:
        if not user.is_platform_admin:
            raise Http404
        return
    get_tenant_or_404(user, tenant, "audit")


def _tenant_choices(user, allowed):
    from django.apps import apps

    tenants = apps.get_model("tenants", "Tenant").objects.order_by("name")
    if allowed is not None:
        tenants = tenants.filter(pk__in=allowed)
    choices = list(tenants.values_list("pk", "name"))
    if allowed is None:
        choices.append((PLATFORM, "Platform events"))
    return choices


@login_required
def search(request):
    allowed = _require_auditor(request.user)
    _check_tenant(request.user, request.GET.get("tenant"))
    form = EventFilterForm(request.GET or None, user=request.user)
    events, has_next, page = [], False, 1
    if form.is_bound and not form.is_valid():
        status = 400
    else:
        status = 200
        filters = form.filters() if form.is_bound else EventFilters()
        try:
            page = max(1, int(request.GET.get("page", 1)))
        except ValueError:
            page = 1
        events, has_next = search_page(request.user, filters, page=page, size=PAGE_SIZE)
    query = {k: v for k, v in request.GET.items() if k != "page" and v}
    context = {
        "form": form, "events": events, "page": page, "has_next": has_next,
        "query": urlencode(query), "tenant_choices": _tenant_choices(request.user, allowed),
        "next_query": urlencode({**query, "page": page + 1}), "prev_query": urlencode({**query, "page": page - 1}),
    }
    template = "audit/_events_table.html" if is_htmx(request) else "audit/search.html"
    return render(request, template, context, status=status)


@login_required
def event_detail(request, event_id: uuid.UUID):
    event = get_object_or_404(events_for(request.user).defer("search"), pk=event_id)
    return render(request, "audit/event_detail.html", {"event": event, "details": details_of(request.user, event)})


@login_required
def export(request, fmt: str):
    _require_auditor(request.user)
    _check_tenant(request.user, request.GET.get("tenant"))
    form = EventFilterForm(request.GET, user=request.user)
    if not form.is_valid():
        return render(request, "audit/search.html", {"form": form, "events": [], "tenant_choices": _tenant_choices(
            request.user, auditable_tenant_ids(request.user))}, status=400)
    filters = form.filters()
    return export_response(
        user=request.user, request=request, events=search_events(request.user, filters), filters=filters, fmt=fmt,
        with_details=request.GET.get("details") == "1",
    )


@login_required
def compliance(request):
    allowed = _require_auditor(request.user)
    tenant = request.GET.get("tenant") or ""
    _check_tenant(request.user, tenant)
    # Without dates the form falls back to the last 30 days.
    form = CompliancePeriodForm({k: v for k, v in request.GET.items() if k in ("since", "until")})
    report = None
    status = 200
    if not form.is_valid():
        status = 400
    elif tenant:
        report = compliance_report(
            tenant_id=None if tenant == PLATFORM else tenant,
            since=form.cleaned_data["since"], until=form.cleaned_data["until"],
        )
        fmt = request.GET.get("download")
        if fmt in ("csv", "json"):
            return compliance_download(user=request.user, request=request, report=report, fmt=fmt)
    query = urlencode({k: v for k, v in request.GET.items() if k != "download" and v})
    return render(request, "audit/compliance.html", {
        "form": form, "report": report, "tenant": tenant, "tenant_choices": _tenant_choices(request.user, allowed),
        "query": query,
    }, status=status)
