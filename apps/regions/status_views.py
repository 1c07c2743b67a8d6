"""Console pages for high availability: the status page (regions, deployments, probe health and latency, the
active region per model, recent failover events), failover policies, and the failover timeline."""

from __future__ import annotations

import time

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.mixins import is_htmx

from . import failover, health, healthchecks
from .models import Deployment, FailoverEvent, FailoverPolicy, Region

RECENT_EVENTS = 10


def _require_platform_admin(user) -> None:
    if not user.is_platform_admin:
        raise PermissionDenied("Only platform admins can see region health and failover.")


class FailoverPolicyForm(forms.Form):
    model = forms.CharField(max_length=100)
    primary_region = forms.ModelChoiceField(queryset=Region.objects.filter(enabled=True))
    failback_after_seconds = forms.IntegerField(min_value=0, max_value=86400, initial=120,
                                                help_text="How long the primary must stay healthy before failback.")
    enabled = forms.BooleanField(required=False, initial=True)


def _regions_view() -> list[dict]:
    deployments = list(Deployment.objects.select_related("region", "tenant").order_by("region_id", "model", "priority"))
    probes = healthchecks.current_state([d.pk for d in deployments])
    now = time.time()
    by_region: dict[str, list[dict]] = {}
    for d in deployments:
        state = probes.get(str(d.pk))
        cooldown = health.cooldown_remaining(d.pk)
        if not d.enabled:
            status = "disabled"
        elif cooldown:
            status = "cooling down"
        elif state is None:
            status = "unknown"
        else:
            status = "healthy" if state["ok"] else "failing"
        by_region.setdefault(d.region_id, []).append({
            "deployment": d, "status": status, "cooldown": cooldown,
            "latency_ms": state["latency_ms"] if state else None, "detail": state["detail"] if state else "",
            "checked_ago": round(now - state["checked_at"], 1) if state else None,
        })
    rows = []
    for region in Region.objects.all():
        members = by_region.get(region.pk, [])
        healthy = [m for m in members if m["status"] in ("healthy", "unknown")]
        latencies = [m["latency_ms"] for m in healthy if m["latency_ms"] is not None]
        rows.append({"region": region, "deployments": members, "healthy": len(healthy), "total": len(members),
                     "latency_ms": min(latencies) if latencies else None})
    return rows


def _context() -> dict:
    policies = list(FailoverPolicy.objects.select_related("primary_region", "active_region"))
    covered = {p.model for p in policies}
    unmanaged = sorted(set(Deployment.objects.values_list("model", flat=True)) - covered)
    return {
        "regions": _regions_view(),
        "policies": policies,
        "unmanaged_models": unmanaged,
        "events": FailoverEvent.objects.all()[:RECENT_EVENTS],
        "generated_at": time.time(),
    }


@login_required
def status(request):
    _require_platform_admin(request.user)
    context = _context()
    if is_htmx(request):
        return render(request, "regions/_status_body.html", context)
    context["form"] = FailoverPolicyForm()
    return render(request, "regions/status.html", context)


@login_required
@require_POST
def policy_save(request):
    _require_platform_admin(request.user)
    form = FailoverPolicyForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            failover.set_policy(actor=request.user, model=data["model"], primary_region=data["primary_region"],
                                failback_after_seconds=data["failback_after_seconds"], enabled=data["enabled"],
                                request=request)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Failover policy for {data['model']} saved.")
            return redirect("regions:status")
    context = _context()
    context["form"] = form
    return render(request, "regions/status.html", context, status=400)


@login_required
@require_POST
def policy_delete(request, model: str):
    _require_platform_admin(request.user)
    policy = get_object_or_404(FailoverPolicy, pk=model)
    failover.delete_policy(actor=request.user, policy=policy, request=request)
    messages.success(request, f"Failover policy for {model} deleted; its traffic follows deployment priority.")
    return redirect("regions:status")


@login_required
def events(request):
    _require_platform_admin(request.user)
    queryset = FailoverEvent.objects.all()
    model = request.GET.get("model", "").strip()[:100]
    if model:
        queryset = queryset.filter(model=model)
    page = Paginator(queryset, 50).get_page(request.GET.get("page"))
    models = FailoverEvent.objects.order_by().values_list("model", flat=True).distinct()
    return render(request, "regions/failover_events.html", {"page": page, "model": model, "models": sorted(models)})
