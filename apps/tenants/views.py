"""Console pages for tenants and what belongs to them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.mixins import get_tenant_or_404, is_htmx, save_form
from apps.core.roles import user_can

from . import selectors, services
from .forms import AllocationForm, DepartmentForm, MemberForm, MemberRoleForm, PoolForm, ProjectForm, TenantForm
from .models import RESOURCES, ResourcePool, TenantStatus

PAGE_SIZE = 25



def _require_platform_admin(user) -> None:
    if not user.is_platform_admin:
        raise PermissionDenied("Only platform admins can do this.")


@login_required
def tenant_list(request):
    search = request.GET.get("q", "").strip()[:100]
    status = request.GET.get("status", "")
    if status not in TenantStatus.values:
        status = ""
    page = Paginator(selectors.tenants_for(request.user, search=search, status=status), PAGE_SIZE).get_page(
        request.GET.get("page"))
    context = {"page": page, "q": search, "status": status, "statuses": TenantStatus.choices}
    template = "tenants/_tenant_table.html" if is_htmx(request) else "tenants/tenant_list.html"
    return render(request, template, context)


@login_required
def tenant_create(request):
    _require_platform_admin(request.user)
    form = TenantForm(request.POST or None, platform_admin=True)
    done = save_form(request, form, lambda data: services.create_tenant(actor=request.user, request=request, **data),
                     message=lambda tenant: f"Tenant {tenant.name} created.",
                     then=lambda tenant: redirect("tenants:detail", tenant_id=tenant.pk))
    if done:
        return done
    return render(request, "tenants/tenant_form.html", {"form": form, "creating": True}, status=400 if form.errors else 200)


@login_required
def tenant_detail(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id)
    usage = [
        {"label": label, "unit": unit, "amount": sum(getattr(a, field) for a in selectors.allocations_of(request.user, tenant, active_only=True))}
        for field, label, unit in RESOURCES
    ]
    return render(request, "tenants/tenant_detail.html", {
        "tenant": tenant, "tab": "overview", "can_manage": user_can(request.user, tenant.pk, "manage"),
        "counts": {
            "members": tenant.memberships.count(), "departments": tenant.departments.count(),
            "projects": tenant.projects.count(),
        },
        "allocated": usage,
    })


@login_required
def tenant_edit(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    form = TenantForm(request.POST or None, instance=tenant, platform_admin=request.user.is_platform_admin)
    done = save_form(request, form,
                     lambda data: services.update_tenant(actor=request.user, tenant=tenant, request=request, **data),
                     message="Tenant saved.", then=lambda _: redirect("tenants:detail", tenant_id=tenant.pk))
    if done:
        return done
    return render(request, "tenants/tenant_form.html", {"form": form, "tenant": tenant, "tab": "overview"},
                  status=400 if form.errors else 200)


@login_required
@require_POST
def tenant_delete(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id)
    _require_platform_admin(request.user)
    if request.POST.get("confirm") != tenant.pk:
        messages.error(request, "Type the tenant id to confirm deletion.")
        return redirect("tenants:edit", tenant_id=tenant.pk)
    services.delete_tenant(actor=request.user, tenant=tenant, request=request)
    messages.success(request, f"Tenant {tenant_id} deleted and its keys destroyed.")
    return redirect("tenants:list")


def _child_page(request, tenant, *, tab, form, items, template, extra=None):
    context = {"tenant": tenant, "tab": tab, "form": form, "items": items,
               "can_manage": user_can(request.user, tenant.pk, "manage"), **(extra or {})}
    return render(request, template, context, status=400 if form is not None and form.errors else 200)


def _child_list(request, tenant_id, *, tab, form_class, save, items, added):
    """A tenant's departments or projects: the list and, for admins, the add form."""
    tenant = get_tenant_or_404(request.user, tenant_id, "manage" if request.method == "POST" else "view")
    form_kwargs = {"tenant": tenant} if form_class is ProjectForm else {}
    # The unsaved instance carries the tenant, so the model's own checks (same-tenant department)
    # run during form validation.
    form = form_class(request.POST or None, instance=form_class._meta.model(tenant=tenant), **form_kwargs)
    done = save_form(request, form, lambda data: save(actor=request.user, tenant=tenant, request=request, **data),
                     message=added, then=lambda _: redirect(f"tenants:{tab}", tenant_id=tenant.pk))
    if done:
        return done
    return _child_page(request, tenant, tab=tab, form=form, items=items(request.user, tenant),
                       template=f"tenants/{tab}.html")


def _child_edit(request, tenant_id, pk, *, tab, kind, form_class, save, items):
    """Edit or delete one department or project (tenant admins)."""
    tenant = get_tenant_or_404(request.user, tenant_id)
    instance = get_object_or_404(items(request.user, tenant), pk=pk)
    get_tenant_or_404(request.user, tenant_id, "manage")
    if request.method == "POST" and request.POST.get("delete"):
        services.delete_child(actor=request.user, instance=instance, request=request)
        messages.success(request, f"{kind.capitalize()} deleted.")
        return redirect(f"tenants:{tab}", tenant_id=tenant.pk)
    form_kwargs = {"tenant": tenant} if form_class is ProjectForm else {}
    form = form_class(request.POST or None, instance=instance, **form_kwargs)
    done = save_form(request, form,
                     lambda data: save(actor=request.user, tenant=tenant, request=request, **{kind: instance}, **data),
                     message=f"{kind.capitalize()} saved.", then=lambda _: redirect(f"tenants:{tab}", tenant_id=tenant.pk))
    if done:
        return done
    return _child_page(request, tenant, tab=tab, form=form, items=None,
                       template="tenants/child_form.html", extra={"object": instance, "kind": kind})


@login_required
def departments(request, tenant_id):
    return _child_list(request, tenant_id, tab="departments", form_class=DepartmentForm,
                       save=services.save_department, items=selectors.departments_of, added="Department added.")


@login_required
def department_edit(request, tenant_id, pk):
    return _child_edit(request, tenant_id, pk, tab="departments", kind="department", form_class=DepartmentForm,
                       save=services.save_department, items=selectors.departments_of)


@login_required
def projects(request, tenant_id):
    return _child_list(request, tenant_id, tab="projects", form_class=ProjectForm,
                       save=services.save_project, items=selectors.projects_of, added="Project added.")


@login_required
def project_edit(request, tenant_id, pk):
    return _child_edit(request, tenant_id, pk, tab="projects", kind="project", form_class=ProjectForm,
                       save=services.save_project, items=selectors.projects_of)


@login_required
def members(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage" if request.method == "POST" else "view")
    form = MemberForm(request.POST or None, tenant=tenant)
    done = save_form(request, form,
                     lambda data: services.add_member(actor=request.user, tenant=tenant, request=request, **data),
                     message=lambda _: f"{form.cleaned_data['email']} added.",
                     then=lambda _: redirect("tenants:members", tenant_id=tenant.pk))
    if done:
        return done
    return _child_page(request, tenant, tab="members", form=form,
                       items=selectors.members_of(request.user, tenant), template="tenants/members.html")


@login_required
def member_edit(request, tenant_id, pk):
    tenant = get_tenant_or_404(request.user, tenant_id)
    membership = get_object_or_404(selectors.members_of(request.user, tenant), pk=pk)
    get_tenant_or_404(request.user, tenant_id, "manage")
    if request.method == "POST" and request.POST.get("delete"):
        services.remove_member(actor=request.user, membership=membership, request=request)
        messages.success(request, f"{membership.user.email} removed.")
        return redirect("tenants:members", tenant_id=tenant.pk)
    form = MemberRoleForm(request.POST or None, tenant=tenant,
                          initial={"role": membership.role, "department": membership.department})
    done = save_form(
        request, form,
        lambda data: services.change_member(actor=request.user, membership=membership, request=request, **data),
        message="Member saved.", then=lambda _: redirect("tenants:members", tenant_id=tenant.pk),
    )
    if done:
        return done
    return _child_page(request, tenant, tab="members", form=form, items=None,
                       template="tenants/child_form.html", extra={"object": membership, "kind": "member"})


@login_required
def allocations(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage" if request.method == "POST" else "view")
    form = AllocationForm(request.POST or None)
    done = save_form(request, form,
                     lambda data: services.allocate_resources(actor=request.user, tenant=tenant, request=request, **data),
                     message=lambda _: f"Resources reserved from {form.cleaned_data['pool'].name}.",
                     then=lambda _: redirect("tenants:allocations", tenant_id=tenant.pk))
    if done:
        return done
    pool_rows = [services.pool_usage(pool) for pool in selectors.pools()]
    return _child_page(request, tenant, tab="allocations", form=form,
                       items=selectors.allocations_of(request.user, tenant), template="tenants/allocations.html",
                       extra={"pools": pool_rows, "resources": RESOURCES})


@login_required
@require_POST
def allocation_release(request, tenant_id, pk):
    tenant = get_tenant_or_404(request.user, tenant_id)
    allocation = get_object_or_404(selectors.allocations_of(request.user, tenant), pk=pk)
    get_tenant_or_404(request.user, tenant_id, "manage")
    try:
        services.release_allocation(actor=request.user, allocation=allocation, request=request)
        messages.success(request, "Allocation released.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("tenants:allocations", tenant_id=tenant.pk)


@login_required
def pool_list(request):
    form = PoolForm(request.POST or None)
    if request.method == "POST":
        _require_platform_admin(request.user)
    done = save_form(request, form, lambda data: services.save_pool(actor=request.user, request=request, **data),
                     message="Pool saved.", then=lambda _: redirect("tenants:pools"))
    if done:
        return done
    rows = [services.pool_usage(pool) for pool in selectors.pools()]
    return render(request, "tenants/pools.html", {"form": form, "rows": rows, "resources": RESOURCES},
                  status=400 if form.errors else 200)


@login_required
def pool_edit(request, pk):
    _require_platform_admin(request.user)
    pool = get_object_or_404(ResourcePool, pk=pk)
    form = PoolForm(request.POST or None, instance=pool)
    done = save_form(request, form,
                     lambda data: services.save_pool(actor=request.user, pool=pool, request=request, **data),
                     message="Pool saved.", then=lambda _: redirect("tenants:pools"))
    if done:
        return done
    return render(request, "tenants/pool_form.html", {"form": form, "pool": pool}, status=400 if form.errors else 200)

