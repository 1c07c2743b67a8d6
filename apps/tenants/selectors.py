"""Reads for tenants: every queryset is scoped to what the user may see."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from .models import AllocationStatus, Department, Membership, Project, ResourceAllocation, ResourcePool, Tenant


def tenants_for(user, *, search: str = "", status: str = "") -> QuerySet[Tenant]:
    queryset = Tenant.objects.restrict(user, "view")
    if search:
        queryset = queryset.filter(Q(id__icontains=search) | Q(name__icontains=search))
    if status:
        queryset = queryset.filter(status=status)
    return queryset.annotate(member_count=Count("memberships", distinct=True)).order_by("name", "id")


def departments_of(user, tenant) -> QuerySet[Department]:
    return Department.objects.restrict(user, "view").filter(tenant=tenant).annotate(
        project_count=Count("projects", distinct=True), member_count=Count("members", distinct=True))


def projects_of(user, tenant) -> QuerySet[Project]:
    return Project.objects.restrict(user, "view").filter(tenant=tenant).select_related("department")


def members_of(user, tenant) -> QuerySet[Membership]:
    return Membership.objects.restrict(user, "view").filter(tenant=tenant).select_related("user", "department")


def allocations_of(user, tenant, *, active_only: bool = False) -> QuerySet[ResourceAllocation]:
    queryset = ResourceAllocation.objects.restrict(user, "view").filter(tenant=tenant).select_related("pool")
    if active_only:
        queryset = queryset.filter(status=AllocationStatus.ACTIVE)
    return queryset


def pools() -> QuerySet[ResourcePool]:
    """Pools are platform-wide: any signed-in user may see their capacity when allocating."""
    return ResourcePool.objects.all()
