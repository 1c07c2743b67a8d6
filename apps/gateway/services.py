"""Gateway writes: API keys (create, revoke), model prices, usage retention and the demo seed."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import record_event
from apps.core.roles import roles_for

from . import context, partitions
from .content import purge_content
from .models import KEY_PREFIX_LIVE, KEY_PREFIX_SERVICE, ApiKey, ModelPrice

logger = logging.getLogger(__name__)

LIMIT_FIELDS = ("requests_per_minute", "requests_per_day", "tokens_per_month", "max_concurrent")


def _new_secret(service: bool) -> tuple[str, str]:
    """(prefix, full key). The prefix is public (shown in lists and logs); the rest is secret."""
    prefix = (KEY_PREFIX_SERVICE if service else KEY_PREFIX_LIVE) + secrets.token_hex(4)
    return prefix, f"{prefix}_{secrets.token_urlsafe(32)}"


def _check_attribution(*, tenant, user, department, project) -> None:
    errors = {}
    if user is not None and tenant is not None and not user.memberships.filter(tenant=tenant).exists():
        errors["user"] = "Choose a member of this tenant."
    if department is not None and department.tenant_id != tenant.pk:
        errors["department"] = "Choose a department of this tenant."
    if project is not None and project.tenant_id != tenant.pk:
        errors["project"] = "Choose a project of this tenant."
    if errors:
        raise ValidationError(errors)


def create_api_key(*, actor, tenant, name: str, user=None, department=None, project=None,
                   expires_at: datetime | None = None, request=None, **limits) -> tuple[ApiKey, str]:
    """A tenant key. Returns (key, full secret): the secret is never stored and cannot be shown again."""
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown limits: {', '.join(sorted(unknown))}")
    if not name or not name.strip():
        raise ValidationError({"name": "Give the key a name."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    _check_attribution(tenant=tenant, user=user, department=department, project=project)
    prefix, secret = _new_secret(service=False)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            tenant=tenant, user=user, department=department, project=project, name=name.strip(), prefix=prefix,
            hashed_key=context.hash_key(secret), expires_at=expires_at,
            created_by=actor if getattr(actor, "is_authenticated", False) else None, **limits,
        )
        record_event(
            action="api_key.create", tenant_id=tenant.pk, actor=actor, resource_type="api_key",
            resource_id=str(api_key.pk), request=request,
            metadata={"prefix": prefix, "name": api_key.name, "user_id": user.pk if user else None,
                      "expires_at": expires_at.isoformat() if expires_at else None,
                      **{k: v for k, v in limits.items() if v is not None}},
        )
    return api_key, secret


def create_platform_service_key(*, actor, name: str, request=None) -> tuple[ApiKey, str]:
    """A key that may act for any tenant by naming tenant_id and user_id in each request."""
    if not getattr(actor, "is_platform_admin", False) and actor is not None:
        raise PermissionError("Only platform admins create platform service keys.")
    prefix, secret = _new_secret(service=True)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            tenant=None, is_platform_service=True, name=name.strip() or "platform service", prefix=prefix,
            hashed_key=context.hash_key(secret), created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        record_event(
            action="api_key.create", tenant_id=None, actor=actor, resource_type="api_key",
            resource_id=str(api_key.pk), request=request, metadata={"prefix": prefix, "platform_service": True},
        )
    return api_key, secret


def revoke_api_key(*, actor, api_key: ApiKey, request=None) -> ApiKey:
    """Revoke at once: every process refuses the key from the moment this commits."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.revoked_by = actor if getattr(actor, "is_authenticated", False) else None
            locked.save(update_fields=["revoked_at", "revoked_by", "updated_at"])
            record_event(
                action="api_key.revoke", tenant_id=locked.tenant_id, actor=actor, resource_type="api_key",
                resource_id=str(locked.pk), request=request, metadata={"prefix": locked.prefix},
            )
        hashed = locked.hashed_key
        transaction.on_commit(lambda: context.forget_key(hashed, revoked=True))
    return locked


def update_api_key(*, actor, api_key: ApiKey, request=None, **changes) -> ApiKey:
    """Rename a key or change its limits and expiry (the secret never changes)."""
    allowed = {"name", "expires_at", *LIMIT_FIELDS}
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"cannot change: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        before = {name: getattr(locked, name) for name in changes}
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save()
        record_event(
            action="api_key.update", tenant_id=locked.tenant_id, actor=actor, resource_type="api_key",
            resource_id=str(locked.pk), request=request,
            metadata={"prefix": locked.prefix, "changed": sorted(n for n in changes if before[n] != changes[n])},
        )
        hashed = locked.hashed_key
        transaction.on_commit(lambda: context.forget_key(hashed, revoked=False))
    return locked


def set_model_price(*, actor, model: str, input_per_1k: Decimal, output_per_1k: Decimal, currency: str = "USD",
                    effective_from: datetime | None = None, request=None) -> ModelPrice:
    """A new price from `effective_from` (default now); earlier prices stay for earlier requests."""
    price = ModelPrice(model=model.strip(), input_per_1k=Decimal(input_per_1k), output_per_1k=Decimal(output_per_1k),
                       currency=currency.upper(), effective_from=effective_from or timezone.now())
    price.full_clean()
    with transaction.atomic():
        price.save()
        record_event(
            action="model_price.set", tenant_id=None, actor=actor, resource_type="model_price",
            resource_id=str(price.pk), request=request,
            metadata={"model": price.model, "input_per_1k": str(price.input_per_1k),
                      "output_per_1k": str(price.output_per_1k), "currency": price.currency,
                      "effective_from": price.effective_from.isoformat()},
        )
    return price


# --- usage retention and partitions ------------------------------------------------------------

def usage_retention_months() -> int:
    return getattr(settings, "SWITCHYARD_USAGE_RETENTION_MONTHS", 13)


def maintain_usage_partitions(*, now: datetime | None = None) -> dict:
    """Create next months' partitions and drop the ones past retention (no mass DELETE)."""
    now = now or timezone.now()
    created = partitions.ensure_partitions(months_back=0, months_ahead=2, now=now)
    cutoff = partitions.add_months(partitions.month_start(now), -usage_retention_months())
    dropped = partitions.drop_partitions_before(cutoff)
    if dropped:
        with transaction.atomic():
            record_event(action="usage.partitions_dropped", tenant_id=None, actor=None, resource_type="usage",
                         metadata={"partitions": dropped, "cutoff": cutoff.isoformat()})
    return {"ensured": created, "dropped": dropped}


def purge_stored_content(*, now: datetime | None = None) -> dict[str, int]:
    """Each tenant's stored prompts and responses past its retention_days."""
    from apps.tenants.models import Tenant

    out = {}
    for tenant_id, days in Tenant.objects.values_list("pk", "retention_days"):
        removed = purge_content(tenant_id=tenant_id, retention_days=days, now=now)
        if removed:
            with transaction.atomic():
                record_event(action="usage.content_purged", tenant_id=tenant_id, actor=None,
                             resource_type="stored_content", metadata={"rows": removed, "retention_days": days})
            out[tenant_id] = removed
    return out


# --- demo ----------------------------------------------------------------------------------------

DEMO_PRICES = {
    "sim-small": (Decimal("0.000150"), Decimal("0.000600")),
    "sim-large": (Decimal("0.002500"), Decimal("0.010000")),
    "gpt-4o-mini": (Decimal("0.000150"), Decimal("0.000600")),
}
DEMO_REGIONS = {"us-east": ("US East", "us"), "eu-west": ("EU West", "eu"), "ap-south": ("Asia-Pacific South", "apac")}


def demo_keys_path() -> Path:
    return Path(settings.SWITCHYARD_DATA_DIR) / "demo_api_keys.json"


def simulator_urls() -> dict[str, str]:
    raw = os.environ.get("SWITCHYARD_SIMULATOR_URLS", "us-east=http://127.0.0.1:9100,eu-west=http://127.0.0.1:9101")
    out = {}
    for item in raw.split(","):
        if "=" in item:
            region, url = item.split("=", 1)
            out[region.strip()] = url.strip().rstrip("/")
    return out


def seed_demo_gateway(*, tenants, actor=None) -> dict:
    """Regions, simulator deployments, prices and one API key per demo tenant (written to
    var/demo_api_keys.json for the traffic generator). Safe to run again."""
    from apps.regions.models import Deployment, Region

    urls = simulator_urls()
    with transaction.atomic():
        for region_id in urls:
            name, group = DEMO_REGIONS.get(region_id, (region_id, "us"))
            Region.objects.get_or_create(pk=region_id, defaults={"name": name, "group": group, "enabled": True})
        for region_id, url in urls.items():
            for model in ("sim-small", "sim-large"):
                Deployment.objects.get_or_create(
                    name=f"{model}@{region_id}",
                    defaults={"model": model, "provider": "simulator", "upstream_model": model,
                              "base_url": url, "region_id": region_id, "tenant": None, "priority": 100,
                              "timeout_seconds": 30, "enabled": True},
                )
        for model, (inp, out) in DEMO_PRICES.items():
            if not ModelPrice.objects.filter(model=model).exists():
                ModelPrice.objects.create(model=model, input_per_1k=inp, output_per_1k=out,
                                          effective_from=timezone.now() - timedelta(days=1))

    keys = {}
    for tenant in tenants:
        # Attributed to someone whose role may generate: a member, else an admin.
        owner = (tenant.memberships.select_related("user").filter(role__in=sorted(roles_for("generate")))
                 .order_by("-role", "pk").first())
        name = "demo traffic"
        existing = ApiKey.objects.filter(tenant=tenant, name=name, revoked_at=None)
        for old in existing:  # the secret of an old key is unknown: replace it
            revoke_api_key(actor=actor, api_key=old)
        _, secret = create_api_key(actor=actor, tenant=tenant, name=name, user=owner.user if owner else None)
        keys[tenant.pk] = secret
    path = demo_keys_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(keys, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return keys
