"""Writes: regions and deployments, each change in one transaction with its audit event."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from apps.audit.services import record_event

from . import health
from .models import Deployment, Region

REGION_FIELDS = ("name", "group", "enabled")
DEPLOYMENT_FIELDS = (
    "name", "model", "provider", "upstream_model", "base_url", "extra_headers", "region", "tenant",
    "priority", "timeout_seconds", "enabled",
)
# Marks "leave the stored credential as it is" in update_deployment.
KEEP = object()


def _value(obj, field: str):
    if field in ("region", "tenant"):
        return getattr(obj, f"{field}_id")
    if field == "extra_headers":
        # Header values may be credentials: the audit trail records only the header names.
        return sorted((getattr(obj, field) or {}).keys())
    return getattr(obj, field)


def _snapshot(obj, fields) -> dict[str, Any]:
    return {field: _value(obj, field) for field in fields}


def _changes(before: dict, after: dict) -> dict[str, list]:
    return {field: [before[field], after[field]] for field in after if before.get(field) != after[field]}


@transaction.atomic
def create_region(*, actor, id: str, name: str, group: str, enabled: bool = True, request=None) -> Region:
    region = Region(id=id, name=name, group=group, enabled=enabled)
    region.full_clean()
    if Region.objects.filter(pk=id).exists():
        raise ValidationError({"id": "A region with this id exists."})
    region.save(force_insert=True)
    record_event(
        action="regions.region.created", tenant_id=None, actor=actor, resource_type="region",
        resource_id=region.pk, request=request, metadata=_snapshot(region, REGION_FIELDS),
    )
    return region


@transaction.atomic
def update_region(*, actor, region: Region, request=None, **changes) -> Region:
    region = Region.objects.select_for_update().get(pk=region.pk)
    before = _snapshot(region, REGION_FIELDS)
    for field, value in changes.items():
        if field not in REGION_FIELDS:
            raise ValueError(f"region field {field!r} cannot be changed")
        setattr(region, field, value)
    region.full_clean()
    region.save()
    diff = _changes(before, _snapshot(region, REGION_FIELDS))
    if diff:
        record_event(
            action="regions.region.updated", tenant_id=None, actor=actor, resource_type="region",
            resource_id=region.pk, request=request, metadata={"changes": diff},
        )
    return region


@transaction.atomic
def delete_region(*, actor, region: Region, request=None) -> None:
    pk = region.pk  # Model.delete() clears it
    try:
        region.delete()
    except ProtectedError:
        count = Deployment.objects.filter(region=region).count()
        raise ValidationError(
            {"region": f"{pk} still has {count} deployment(s); move or delete them first."}
        ) from None
    record_event(
        action="regions.region.deleted", tenant_id=None, actor=actor, resource_type="region",
        resource_id=pk, request=request, metadata={"name": region.name, "group": region.group},
    )


def _check_unique_name(deployment: Deployment) -> None:
    if Deployment.objects.filter(name=deployment.name).exclude(pk=deployment.pk).exists():
        raise ValidationError({"name": "A deployment with this name exists."})


@transaction.atomic
def create_deployment(*, actor, request=None, api_key: str | None = None, **fields) -> Deployment:
    unknown = set(fields) - set(DEPLOYMENT_FIELDS)
    if unknown:
        raise ValueError(f"unknown deployment fields: {', '.join(sorted(unknown))}")
    deployment = Deployment(**fields)
    deployment.api_key = api_key or None
    deployment.full_clean(exclude=["api_key"])
    _check_unique_name(deployment)
    deployment.save(force_insert=True)
    metadata = _snapshot(deployment, DEPLOYMENT_FIELDS)
    metadata["has_api_key"] = bool(api_key)
    record_event(
        action="regions.deployment.created", tenant_id=deployment.tenant_id, actor=actor,
        resource_type="deployment", resource_id=str(deployment.pk), request=request, metadata=metadata,
    )
    return deployment


@transaction.atomic
def update_deployment(*, actor, deployment: Deployment, request=None, api_key=KEEP, **changes) -> Deployment:
    """Change fields; `api_key` replaces the stored credential (None or "" clears it), omitted keeps it.

    Moving a deployment between the shared pool and a tenant re-encrypts its credential under the new
    owner's key, because the ciphertext is bound to the tenant it was written for."""
    current = Deployment.objects.select_for_update().get(pk=deployment.pk)
    before = _snapshot(current, DEPLOYMENT_FIELDS)
    plaintext_key = current.api_key
    for field, value in changes.items():
        if field not in DEPLOYMENT_FIELDS:
            raise ValueError(f"deployment field {field!r} cannot be changed")
        setattr(current, field, value)
    key_changed = api_key is not KEEP
    current.api_key = (api_key or None) if key_changed else plaintext_key
    current.full_clean(exclude=["api_key"])
    _check_unique_name(current)
    current.save()
    diff = _changes(before, _snapshot(current, DEPLOYMENT_FIELDS))
    if key_changed:
        diff["api_key"] = ["(changed)", "(set)" if api_key else "(cleared)"]
    if diff:
        # A deployment moved between owners is recorded in the new owner's chain.
        record_event(
            action="regions.deployment.updated", tenant_id=current.tenant_id, actor=actor,
            resource_type="deployment", resource_id=str(current.pk), request=request, metadata={"changes": diff},
        )
    return current


@transaction.atomic
def delete_deployment(*, actor, deployment: Deployment, request=None) -> None:
    metadata = {"name": deployment.name, "model": deployment.model, "region": deployment.region_id}
    tenant_id = deployment.tenant_id
    pk = str(deployment.pk)
    deployment.delete()
    record_event(
        action="regions.deployment.deleted", tenant_id=tenant_id, actor=actor, resource_type="deployment",
        resource_id=pk, request=request, metadata=metadata,
    )


def set_deployment_enabled(*, actor, deployment: Deployment, enabled: bool, request=None) -> Deployment:
    return update_deployment(actor=actor, deployment=deployment, request=request, enabled=enabled)


@transaction.atomic
def end_deployment_cooldown(*, actor, deployment: Deployment, request=None) -> None:
    """Put a cooling-down deployment back in rotation now."""
    record_event(
        action="regions.deployment.cooldown_ended", tenant_id=deployment.tenant_id, actor=actor,
        resource_type="deployment", resource_id=str(deployment.pk), request=request,
    )
    transaction.on_commit(lambda: health.end_cooldown(deployment.pk))
