"""Console pages: the tenant SLA dashboard (live, Plotly), the fleet view, policy, alerts and reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from apps.core.mixins import get_tenant_or_404, is_htmx
from apps.core.roles import user_can

from . import compliance, figures, selectors, services
from .alerts import RULE_LABELS
from .forms import PolicyForm, ReportForm
from .models import ReportStatus

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_RANGE = "7d"


def _range(request) -> str:
    value = request.GET.get("range", DEFAULT_RANGE)
    return value if value in RANGES else DEFAULT_RANGE


def _stat_rows(result: dict) -> list[dict]:
    rows = []
    for metric, (label, unit, direction) in compliance.METRICS.items():
        actual, target = result["metrics"].get(metric), result["targets"].get(metric)
        met = None if actual is None or target is None else (actual >= target if direction == "min" else actual <= target)
        rows.append({"metric": metric, "label": label, "unit": unit, "actual": actual, "target": target, "met": met,
                     "month": result["month_metrics"].get(metric), "direction": "at least" if direction == "min" else "at most"})
    return rows


def dashboard_context(user, tenant, range_key: str, now: datetime | None = None) -> dict:
    """What the tenant dashboard shows, computed from rollups (shared by the page and its refresh)."""
    now = now or datetime.now(UTC)
    policy = services.policy_for(tenant)
    start, end = now - RANGES[range_key], now + timedelta(minutes=1)
    # The trend is read from the same rows as the compliance figures (one read for the page).
    result, rollups = compliance.assess(policy=policy, tenant_id=tenant.pk, now=now, extra_starts=(start,))
    series = rollups.hourly(start)
    x_range = (start, end)
    figs = {
        "chart-availability": figures.availability_figure(series, result["targets"], x_range),
        "chart-latency": figures.latency_figure(series, result["targets"], x_range),
        "chart-traffic": figures.traffic_figure(series, x_range),
        "chart-budget": figures.budget_figure(result["budget"]["remaining_percent"]),
    }
    return {
        "tenant": tenant, "policy": policy, "result": result, "stats": _stat_rows(result), "range": range_key,
        "ranges": list(RANGES), "figures_json": figures.to_json(figs),
        "recent_alerts": list(selectors.alert_history(user, tenant)[:5]),
        "rule_labels": RULE_LABELS, "now": now,
    }


@login_required
def tenant_dashboard(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "view_dashboards")
    context = dashboard_context(request.user, tenant, _range(request))
    context.update(tab="sla", can_manage=user_can(request.user, tenant.pk, "manage"),
                   can_edit_policy=request.user.is_platform_admin)
    template = "sla/_live.html" if is_htmx(request) else "sla/tenant_dashboard.html"
    return render(request, template, context)


@login_required
def fleet(request):
    statuses = list(selectors.fleet_statuses(request.user))
    context = {"statuses": statuses, "figure_json": figures.to_json({"chart-fleet": figures.fleet_figure(statuses)}),
               "in_breach": sum(1 for s in statuses if not s.compliant)}
    template = "sla/_fleet_body.html" if is_htmx(request) else "sla/fleet.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@login_required
def policy(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "view_dashboards")
    current = services.policy_for(tenant)
    own = current if current.tenant_id == tenant.pk else None
    status = 200
    if request.method == "POST":
        # The SLA is the platform's promise: only platform admins change it (a tenant admin must
        # not be able to grant their own tenant credits).
        if not request.user.is_platform_admin:
            raise PermissionDenied("Only platform admins change SLA policies.")
        form = PolicyForm(request.POST, instance_defaults=current)
        if form.is_valid():
            try:
                services.save_policy(actor=request.user, tenant=tenant, request=request, **form.policy_fields())
            except ValidationError as exc:
                form.add_validation_error(exc)
                status = 400
            else:
                messages.success(request, "SLA policy saved.")
                return redirect("sla:policy", tenant_id=tenant.pk)
        else:
            status = 400
    else:
        form = PolicyForm(instance_defaults=current)
    context = {"tenant": tenant, "tab": "sla", "form": form, "policy": current, "own": own,
               "can_edit_policy": request.user.is_platform_admin, "can_manage": user_can(request.user, tenant.pk, "manage")}
    return render(request, "sla/policy.html", context, status=status)


@login_required
def alert_history(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "view_dashboards")
    page = Paginator(selectors.alert_history(request.user, tenant), 50).get_page(request.GET.get("page"))
    context = {"tenant": tenant, "tab": "sla", "page": page, "rule_labels": RULE_LABELS,
               "violations": selectors.recent_violations(request.user, tenant),
               "can_manage": user_can(request.user, tenant.pk, "manage")}
    return render(request, "sla/alerts.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def reports(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "view_dashboards")
    can_request = user_can(request.user, tenant.pk, "manage")
    status = 200
    form = ReportForm(request.POST or None)
    if request.method == "POST":
        if not can_request:
            raise PermissionDenied("Only tenant admins request reports.")
        if form.is_valid():
            try:
                services.request_report(actor=request.user, tenant=tenant, request=request, **form.period())
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
                status = 400
            else:
                messages.success(request, "Report requested; it appears below when ready.")
                return redirect("sla:reports", tenant_id=tenant.pk)
        else:
            status = 400
    context = {"tenant": tenant, "tab": "sla", "form": form, "can_request": can_request,
               "items": selectors.reports_for(request.user, tenant)[:100], "can_manage": can_request}
    template = "sla/_reports_table.html" if is_htmx(request) else "sla/reports.html"
    return render(request, template, context, status=status)


@login_required
def report_download(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "view_dashboards")
    fmt = request.GET.get("format", "pdf")
    try:
        report_id = uuid.UUID(request.GET.get("report", ""))
    except ValueError:
        return HttpResponseBadRequest("Name the report: ?report=<report id>&format=pdf or csv.")
    if fmt not in ("pdf", "csv"):
        return HttpResponseBadRequest("format must be pdf or csv.")
    report = get_object_or_404(selectors.reports_for(request.user, tenant), pk=report_id)
    relative = report.pdf_path if fmt == "pdf" else report.csv_path
    if report.status != ReportStatus.READY or not relative:
        raise Http404("The report is not ready.")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("The report file is missing.")
    services.record_report_download(actor=request.user, report=report, fmt=fmt, request=request)
    name = f"sla-{tenant.pk}-{report.period_start:%Y%m%d}-{report.period_end:%Y%m%d}.{fmt}"
    content_type = "application/pdf" if fmt == "pdf" else "text/csv"
    return FileResponse(path.open("rb"), as_attachment=True, filename=name, content_type=content_type)
