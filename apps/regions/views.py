"""Console pages: regions and deployments for platform admins, dedicated deployments for tenant admins."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.mixins import get_tenant_or_404, is_htmx, save_form

from . import health, selectors, services
from .forms import DeploymentForm, RegionForm
from .models import Deployment, Region

PAGE_SIZE = 50


def _require_platform_admin(user) -> None:
    if not user.is_platform_admin:
        raise PermissionDenied("Only platform admins can manage regions and deployments.")



def _rows(deployments) -> list[dict]:
    return [{"deployment": d, "cooldown": health.cooldown_remaining(d.pk)} for d in deployments]


@login_required
def index(request):
    """The Regions section: the whole map for platform admins; the rest see their tenants' dedicated deployments."""
    user = request.user
    if not user.is_platform_admin:
        deployments = selectors.deployments_for(user, "manage")
        return render(request, "regions/tenant_deployments.html", {
            "rows": _rows(deployments), "tenant": None,
        })
    deployments = selectors.deployments_for(user)
    model = request.GET.get("model", "").strip()[:100]
    region = request.GET.get("region", "").strip()[:63]
    if model:
        deployments = deployments.filter(model=model)
    if region:
        deployments = deployments.filter(region_id=region)
    page = Paginator(deployments, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "regions": Region.objects.all(),
        "page": page,
        "rows": _rows(page.object_list),
        "model": model,
        "region": region,
        "models": Deployment.objects.order_by("model").values_list("model", flat=True).distinct(),
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "deployment-table":
        return render(request, "regions/_deployment_table.html", context)
    return render(request, "regions/index.html", context)


@login_required
def region_create(request):
    _require_platform_admin(request.user)
    form = RegionForm(request.POST or None)
    done = save_form(request, form, lambda data: services.create_region(actor=request.user, request=request, **data),
                     message=lambda region: f"Region {region.id} created.", then=lambda _: redirect("regions:index"))
    if done:
        return done
    return render(request, "regions/region_form.html", {"form": form, "creating": True},
                  status=400 if form.errors else 200)


@login_required
def region_edit(request, region_id):
    _require_platform_admin(request.user)
    region = get_object_or_404(Region, pk=region_id)
    form = RegionForm(request.POST or None, instance=Region.objects.get(pk=region.pk))
    done = save_form(
        request, form,
        lambda data: services.update_region(actor=request.user, region=region, request=request,
                                            **{k: v for k, v in data.items() if k != "id"}),
        message=f"Region {region.id} saved.", then=lambda _: redirect("regions:index"),
    )
    if done:
        return done
    return render(request, "regions/region_form.html", {"form": form, "region": region},
                  status=400 if form.errors else 200)


@login_required
@require_POST
def region_delete(request, region_id):
    _require_platform_admin(request.user)
    region = get_object_or_404(Region, pk=region_id)
    try:
        services.delete_region(actor=request.user, region=region, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Region {region_id} deleted.")
    return redirect("regions:index")


@login_required
def deployment_create(request):
    _require_platform_admin(request.user)
    form = DeploymentForm(request.POST or None, initial={"region": request.GET.get("region")})
    done = save_form(
        request, form,
        lambda _: services.create_deployment(actor=request.user, request=request, **form.service_kwargs()),
        message=lambda deployment: f"Deployment {deployment.name} created.", then=lambda _: redirect("regions:index"),
    )
    if done:
        return done
    return render(request, "regions/deployment_form.html", {"form": form, "creating": True},
                  status=400 if form.errors else 200)


@login_required
def deployment_edit(request, pk):
    _require_platform_admin(request.user)
    deployment = get_object_or_404(Deployment, pk=pk)
    form = DeploymentForm(request.POST or None, instance=Deployment.objects.get(pk=pk))
    done = save_form(
        request, form,
        lambda _: services.update_deployment(actor=request.user, deployment=deployment, request=request,
                                             **form.service_kwargs()),
        message=lambda _: f"Deployment {form.cleaned_data['name']} saved.", then=lambda _: redirect("regions:index"),
    )
    if done:
        return done
    return render(request, "regions/deployment_form.html", {
        "form": form, "deployment": deployment, "cooldown": health.cooldown_remaining(deployment.pk),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
def deployment_delete(request, pk):
    _require_platform_admin(request.user)
    deployment = get_object_or_404(Deployment, pk=pk)
    services.delete_deployment(actor=request.user, deployment=deployment, request=request)
    messages.success(request, f"Deployment {deployment.name} deleted.")
    return redirect("regions:index")


@login_required
@require_POST
def deployment_toggle(request, pk):
    """Enable or disable; with HTMX only the row is swapped."""
    _require_platform_admin(request.user)
    deployment = get_object_or_404(Deployment, pk=pk)
    deployment = services.set_deployment_enabled(actor=request.user, deployment=deployment,
                                                 enabled=not deployment.enabled, request=request)
    if is_htmx(request):
        return render(request, "regions/_deployment_row.html", {"row": _rows([deployment])[0]})
    return redirect("regions:index")


@login_required
@require_POST
def deployment_end_cooldown(request, pk):
    _require_platform_admin(request.user)
    deployment = get_object_or_404(Deployment, pk=pk)
    services.end_deployment_cooldown(actor=request.user, deployment=deployment, request=request)
    if is_htmx(request):
        return render(request, "regions/_deployment_row.html", {"row": _rows([deployment])[0]})
    messages.success(request, f"{deployment.name} is back in rotation.")
    return redirect("regions:index")


@login_required
def tenant_deployments(request, tenant_id):
    """A tenant admin's read-only view of the deployments dedicated to the tenant."""
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    return render(request, "regions/tenant_deployments.html", {
        "tenant": tenant, "rows": _rows(selectors.dedicated_deployments(tenant.pk)), "tab": "deployments",
    })
