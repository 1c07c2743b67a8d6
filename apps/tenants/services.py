"""Writes for tenants and what hangs off them: one transaction each, each audited."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.audit.services import record_event
from apps.keys.services import destroy_tenant_keys, ensure_tenant_keyring

from .models import (
    RESOURCE_FIELDS,
    RESOURCES,
    AllocationStatus,
    Department,
    Membership,
    Project,
    ResourceAllocation,
    ResourcePool,
    Tenant,
)

# Fields only a platform admin may change: they are the commercial contract, not settings.
PLATFORM_ONLY_FIELDS = {
    "tier", "status", "isolation_mode", "requests_per_minute", "requests_per_day",
    "tokens_per_month", "max_concurrent", "allowed_models",
}
TENANT_EDITABLE_FIELDS = {
    "name", "data_residency", "store_content", "encrypt_content", "retention_days",
    "key_rotation_days", "mfa_required", "redis_outage_mode",
}


class AllocationRefused(ValidationError):
    """An allocation asks for more of a resource than the pool has free."""

    def __init__(self, resource: str, label: str, unit: str, requested: int, available: int):
        self.resource, self.requested, self.available = resource, requested, available
        super().__init__(
            {resource: f"Not enough {label}: requested {requested} {unit}, only {available} {unit} free in this pool."}
        )


def _full_clean(instance, exclude=None):
    instance.full_clean(exclude=exclude)


def _diff(instance, changes: dict) -> dict:
    return {field: {"from": getattr(instance, field), "to": value} for field, value in changes.items()
            if getattr(instance, field) != value}


@transaction.atomic
def create_tenant(*, actor, request=None, **fields) -> Tenant:
    tenant = Tenant(**fields)
    _full_clean(tenant)
    tenant.save(force_insert=True)
    ensure_tenant_keyring(tenant_id=tenant.pk)
    record_event(
        action="tenant.create", tenant_id=tenant.pk, actor=actor, request=request,
        resource_type="tenant", resource_id=tenant.pk,
        metadata={"tier": tenant.tier, "isolation_mode": tenant.isolation_mode},
    )
    return tenant


@transaction.atomic
def update_tenant(*, actor, tenant: Tenant, request=None, **changes) -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    changes.pop("id", None)
    diff = _diff(tenant, changes)
    for field, value in changes.items():
        setattr(tenant, field, value)
    _full_clean(tenant, exclude=["id"])
    tenant.save()
    if diff:
        record_event(
            action="tenant.update", tenant_id=tenant.pk, actor=actor, request=request,
            resource_type="tenant", resource_id=tenant.pk,
            metadata={"changed": sorted(diff)}, details={"changes": diff},
        )
    return tenant


@transaction.atomic
def delete_tenant(*, actor, tenant: Tenant, request=None) -> None:
    tenant_id = tenant.pk
    # Crypto-shredding first: once the data keys are gone, every ciphertext of the tenant is
    # unreadable, whatever copies of rows survive in backups.
    destroyed = destroy_tenant_keys(tenant_id=tenant_id)
    tenant.delete()
    record_event(
        action="tenant.delete", tenant_id=None, actor=actor, request=request,
        resource_type="tenant", resource_id=tenant_id, metadata={"keys_destroyed": destroyed},
    )


def _save_child(instance, *, actor, request, action: str, resource_type: str, metadata: dict | None = None):
    # The per-tenant unique code is checked by the insert itself (below), which also holds
    # under concurrency, and reported on the field rather than as a form-wide error.
    instance.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise ValidationError({"code": "This code is already used in this tenant."}) from None
    record_event(
        action=action, tenant_id=instance.tenant_id, actor=actor, request=request,
        resource_type=resource_type, resource_id=str(instance.pk), metadata=metadata or {},
    )
    return instance


@transaction.atomic
def save_department(*, actor, tenant: Tenant, department: Department | None = None, request=None, **fields) -> Department:
    creating = department is None
    department = department or Department(tenant=tenant)
    for field, value in fields.items():
        setattr(department, field, value)
    return _save_child(department, actor=actor, request=request, resource_type="department",
                       action="department.create" if creating else "department.update",
                       metadata={"code": department.code})


@transaction.atomic
def save_project(*, actor, tenant: Tenant, project: Project | None = None, request=None, **fields) -> Project:
    creating = project is None
    project = project or Project(tenant=tenant)
    for field, value in fields.items():
        setattr(project, field, value)
    return _save_child(project, actor=actor, request=request, resource_type="project",
                       action="project.create" if creating else "project.update",
                       metadata={"code": project.code})


@transaction.atomic
def delete_child(*, actor, instance, request=None) -> None:
    resource_type = instance._meta.model_name
    record_event(
        action=f"{resource_type}.delete", tenant_id=instance.tenant_id, actor=actor, request=request,
        resource_type=resource_type, resource_id=str(instance.pk),
    )
    instance.delete()


@transaction.atomic
def add_member(*, actor, tenant: Tenant, email: str, role: str, name: str = "", password: str | None = None,
               department: Department | None = None, request=None) -> Membership:
    """Add a user (created if the email is new) to the tenant with a role."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    users = get_user_model()
    email = users.objects.normalize_email(email).lower()
    user = users.objects.filter(email=email).first()
    if user is None:
        candidate = users(email=email, name=name)
        if password:
            try:
                validate_password(password, candidate)
            except ValidationError as exc:
                raise ValidationError({"password": exc.messages}) from None
        user = users.objects.create_user(email, password or None, name=name)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError({"email": "This user is already a member of this tenant."})
    membership = Membership(tenant=tenant, user=user, role=role, department=department)
    _full_clean(membership)
    membership.save()
    record_event(
        action="member.add", tenant_id=tenant.pk, actor=actor, request=request,
        resource_type="membership", resource_id=str(membership.pk),
        metadata={"user_id": user.pk, "role": role},
    )
    return membership


@transaction.atomic
def change_member(*, actor, membership: Membership, request=None, **changes) -> Membership:
    diff = _diff(membership, changes)
    for field, value in changes.items():
        setattr(membership, field, value)
    _full_clean(membership)
    membership.save()
    membership.user.forget_tenant_roles()
    if diff:
        record_event(
            action="member.update", tenant_id=membership.tenant_id, actor=actor, request=request,
            resource_type="membership", resource_id=str(membership.pk),
            metadata={"user_id": membership.user_id, "changed": sorted(diff), "role": membership.role},
        )
    return membership


@transaction.atomic
def remove_member(*, actor, membership: Membership, request=None) -> None:
    record_event(
        action="member.remove", tenant_id=membership.tenant_id, actor=actor, request=request,
        resource_type="membership", resource_id=str(membership.pk), metadata={"user_id": membership.user_id},
    )
    membership.delete()


@dataclass(frozen=True)
class PoolUsage:
    pool: ResourcePool
    allocated: dict[str, int]
    free: dict[str, int]


def pool_usage(pool: ResourcePool) -> PoolUsage:
    totals = ResourceAllocation.objects.filter(pool=pool, status=AllocationStatus.ACTIVE).aggregate(
        **{field: Sum(field) for field in RESOURCE_FIELDS}
    )
    allocated = {field: int(totals[field] or 0) for field in RESOURCE_FIELDS}
    free = {field: getattr(pool, field) - allocated[field] for field in RESOURCE_FIELDS}
    return PoolUsage(pool=pool, allocated=allocated, free=free)


@transaction.atomic
def allocate_resources(*, actor, tenant: Tenant, pool: ResourcePool, purpose: str = "", request=None,
                       **amounts: int) -> ResourceAllocation:
    """Reserve capacity from a pool. The pool row is locked for the check and the insert, so
    parallel allocations queue behind each other and can never overbook."""
    unknown = set(amounts) - set(RESOURCE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "Unknown resource."})
    requested = {field: int(amounts.get(field) or 0) for field in RESOURCE_FIELDS}
    for field, value in requested.items():
        if value < 0:
            raise ValidationError({field: "Must be zero or more."})
    if not any(requested.values()):
        raise ValidationError({"cpu_millicores": "Request at least one resource."})

    locked_pool = ResourcePool.objects.select_for_update().get(pk=pool.pk)
    usage = pool_usage(locked_pool)
    for field, label, unit in RESOURCES:
        if requested[field] > usage.free[field]:
            raise AllocationRefused(field, label, unit, requested[field], usage.free[field])

    allocation = ResourceAllocation.objects.create(
        tenant=tenant, pool=locked_pool, purpose=purpose, created_by=actor if getattr(actor, "pk", None) else None,
        **requested,
    )
    record_event(
        action="allocation.create", tenant_id=tenant.pk, actor=actor, request=request,
        resource_type="allocation", resource_id=str(allocation.pk),
        metadata={"pool": locked_pool.name, **requested},
    )
    return allocation


@transaction.atomic
def release_allocation(*, actor, allocation: ResourceAllocation, request=None) -> ResourceAllocation:
    allocation = ResourceAllocation.objects.select_for_update().get(pk=allocation.pk)
    if allocation.status == AllocationStatus.RELEASED:
        raise ValidationError({"status": "This allocation is already released."})
    allocation.status = AllocationStatus.RELEASED
    allocation.released_at = timezone.now()
    allocation.save(update_fields=["status", "released_at", "updated_at"])
    record_event(
        action="allocation.release", tenant_id=allocation.tenant_id, actor=actor, request=request,
        resource_type="allocation", resource_id=str(allocation.pk),
        metadata={"pool": allocation.pool.name, **{f: getattr(allocation, f) for f in RESOURCE_FIELDS}},
    )
    return allocation


@transaction.atomic
def save_pool(*, actor, pool: ResourcePool | None = None, request=None, **fields) -> ResourcePool:
    creating = pool is None
    pool = pool or ResourcePool()
    for field, value in fields.items():
        setattr(pool, field, value)
    _full_clean(pool)
    if not creating:
        usage = pool_usage(ResourcePool.objects.select_for_update().get(pk=pool.pk))
        for field, label, unit in RESOURCES:
            if getattr(pool, field) < usage.allocated[field]:
                raise ValidationError({field: f"{usage.allocated[field]} {unit} of {label} is allocated; capacity cannot go below it."})
    pool.save()
    record_event(
        action="pool.create" if creating else "pool.update", tenant_id=None, actor=actor, request=request,
        resource_type="resource_pool", resource_id=str(pool.pk), metadata={f: getattr(pool, f) for f in RESOURCE_FIELDS},
    )
    return pool
