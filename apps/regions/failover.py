"""Failover and failback of a model's traffic between regions, and the region order the router follows.

Each FailoverPolicy names a model's primary region. After every round of active health checks `evaluate()`
looks at each policy's regions (a region is healthy for a model when one of its enabled deployments of that
model is neither cooling down nor failing its probes):
- active region unhealthy -> fail over to the healthy region with the lowest probe latency;
- primary healthy again -> fail back once it has stayed healthy for the policy's failback_after_seconds
  (hysteresis: a primary that flaps never gets traffic back until it holds steady).
Every move is a FailoverEvent, an audit event, a notification to the tenants' channels and a call of the
traffic-redirect hooks (apps/regions/hooks.py) with the new primary.

The router reads the outcome as a region order per model (active first, then the other healthy regions by
latency) from one Redis hash, cached per process for REGIONS_HEALTH_CACHE_SECONDS. It only ever reorders
deployments the router already found allowed: a tenant's data residency is never crossed, so a tenant whose
residency allows no healthy region gets a 503 from the router instead.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from apps.audit.services import record_event
from apps.core.models import NotificationChannel, NotificationEvent
from apps.core.notifications import notify
from apps.core.redis import get_async_redis, get_redis, key

from . import health, healthchecks, hooks
from .models import Deployment, FailoverEvent, FailoverKind, FailoverPolicy, Region

logger = logging.getLogger(__name__)


def _order_key() -> str:
    return key("failover", "order")


@dataclass(frozen=True, slots=True)
class RegionHealth:
    region_id: str
    healthy: bool
    latency_ms: float | None
    deployments: int
    healthy_deployments: int


def region_health(model: str) -> dict[str, RegionHealth]:
    """Health of every region that has an enabled deployment of `model`, from Redis (probes and cool-downs)."""
    deployments = list(Deployment.objects.routable().filter(model=model))
    ids = [str(d.pk) for d in deployments]
    probes = healthchecks.current_state(ids)
    by_region: dict[str, list] = {}
    for d in deployments:
        state = probes.get(str(d.pk))
        # Never probed yet (a new deployment, or Redis lost its state): judge by passive health alone.
        ok = (state is None or state["ok"]) and not health.is_cooling_down(d.pk)
        latency = state["latency_ms"] if state and state["ok"] else None
        by_region.setdefault(d.region_id, []).append((ok, latency))
    out = {}
    for region_id, rows in by_region.items():
        latencies = [lat for ok, lat in rows if ok and lat is not None]
        healthy = sum(1 for ok, _ in rows if ok)
        out[region_id] = RegionHealth(region_id, healthy > 0, min(latencies) if latencies else None, len(rows), healthy)
    return out


def _ranked(regions: dict[str, RegionHealth], exclude: set[str] = frozenset()) -> list[str]:
    """Healthy regions, fastest first (never-probed ones after those with a latency)."""
    healthy = [r for r in regions.values() if r.healthy and r.region_id not in exclude]
    healthy.sort(key=lambda r: (r.latency_ms is None, r.latency_ms or 0.0, r.region_id))
    return [r.region_id for r in healthy]


def region_order(policy: FailoverPolicy, regions: dict[str, RegionHealth]) -> list[str]:
    active = policy.active_region_id or policy.primary_region_id
    rest = [r for r in _ranked(regions) if r != active]
    unhealthy = sorted(r for r, h in regions.items() if not h.healthy and r != active)
    return [active, *rest, *unhealthy]


def _transition(policy: FailoverPolicy, *, kind: str, to_region: str, reason: str, now) -> FailoverEvent:
    from_region = policy.active_region_id or policy.primary_region_id
    policy.active_region_id = to_region
    policy.changed_at = now
    policy.save(update_fields=["active_region", "changed_at", "primary_healthy_since", "updated_at"])
    event = FailoverEvent.objects.create(model=policy.model, kind=kind, from_region=from_region, to_region=to_region,
                                         reason=reason[:500])
    metadata = {"model": policy.model, "from_region": from_region, "to_region": to_region, "reason": reason[:500],
                "primary_region": policy.primary_region_id, "event_id": str(event.id)}
    record_event(action=f"regions.{kind}", tenant_id=None, actor=None, resource_type="model",
                 resource_id=policy.model, metadata=metadata)
    title = (f"{policy.model}: traffic moved from {from_region} to {to_region}" if kind == FailoverKind.FAILOVER
             else f"{policy.model}: traffic back in its primary region {to_region}")
    link = "/regions/status/"
    for tenant_id in (NotificationChannel.objects.filter(enabled=True)
                      .values_list("tenant_id", flat=True).distinct().order_by()):
        notify(tenant_id=tenant_id, event=NotificationEvent.FAILOVER, title=title, message=reason,
               severity="critical" if kind == FailoverKind.FAILOVER else "info", link=link,
               dedup_key=f"{kind}:{policy.model}:{to_region}", dedup_seconds=60)
    transaction.on_commit(lambda: _call_hooks(event.pk))
    logger.warning("region %s", kind, extra=metadata)
    return event


def _call_hooks(event_id) -> None:
    event = FailoverEvent.objects.get(pk=event_id)
    results = hooks.call_hooks(event)
    if results:
        FailoverEvent.objects.filter(pk=event_id).update(hook_results=results)


def _evaluate_policy(policy: FailoverPolicy, regions: dict[str, RegionHealth], now) -> FailoverEvent | None:
    primary = policy.primary_region_id
    active = policy.active_region_id or primary
    primary_ok = regions.get(primary, RegionHealth(primary, False, None, 0, 0)).healthy
    if primary_ok:
        policy.primary_healthy_since = policy.primary_healthy_since or now
    else:
        policy.primary_healthy_since = None
    event = None
    if active == primary:
        if not primary_ok:
            targets = _ranked(regions, exclude={primary})
            if targets:
                target = regions[targets[0]]
                latency = f", {target.latency_ms:g} ms" if target.latency_ms is not None else ""
                event = _transition(policy, kind=FailoverKind.FAILOVER, to_region=target.region_id, now=now,
                                    reason=f"Primary region {primary} has no healthy deployment of {policy.model}; "
                                           f"moved to {target.region_id} (healthy{latency}).")
            else:
                logger.error("no healthy region left for model", extra={"model": policy.model})
    else:
        held = now - policy.primary_healthy_since if policy.primary_healthy_since else None
        active_ok = regions.get(active, RegionHealth(active, False, None, 0, 0)).healthy
        if held is not None and held >= timedelta(seconds=policy.failback_after_seconds):
            event = _transition(policy, kind=FailoverKind.FAILBACK, to_region=primary, now=now,
                                reason=f"Primary region {primary} has been healthy for {int(held.total_seconds())} s "
                                       f"(failback after {policy.failback_after_seconds} s).")
        elif not active_ok:
            targets = _ranked(regions, exclude={active})
            if targets:
                kind = FailoverKind.FAILBACK if targets[0] == primary else FailoverKind.FAILOVER
                event = _transition(policy, kind=kind, to_region=targets[0], now=now,
                                    reason=f"Region {active} lost its healthy deployments of {policy.model}; "
                                           f"moved to {targets[0]}.")
    if event is None:
        if policy.active_region_id is None:
            policy.active_region_id = primary
        policy.save(update_fields=["active_region", "primary_healthy_since", "updated_at"])
    return event


def evaluate() -> list[FailoverEvent]:
    """One round over every enabled policy; publishes the region order the router follows."""
    events = []
    orders: dict[str, str] = {}
    for model in FailoverPolicy.objects.filter(enabled=True).values_list("model", flat=True):
        regions = region_health(model)
        with transaction.atomic():
            policy = FailoverPolicy.objects.select_for_update().filter(pk=model, enabled=True).first()
            if policy is None:
                continue
            event = _evaluate_policy(policy, regions, timezone.now())
            if event is not None:
                events.append(event)
            orders[model] = json.dumps(region_order(policy, regions))
    publish(orders)
    return events


def publish(orders: dict[str, str]) -> None:
    """Replace the router's region orders in one step (models without a policy drop out)."""
    try:
        pipe = get_redis().pipeline(transaction=True)
        pipe.delete(_order_key())
        if orders:
            pipe.hset(_order_key(), mapping=orders)
        pipe.execute()
    except RedisError:
        logger.warning("could not publish the failover region order; routers keep the last one they read")


# --- Policies (console and API writes) -------------------------------------------------------------------------

@transaction.atomic
def set_policy(*, actor, model: str, primary_region: Region, failback_after_seconds: int | None = None,
               enabled: bool = True, request=None) -> FailoverPolicy:
    model = (model or "").strip()
    if not model:
        raise ValidationError({"model": "Name the model."})
    if not Deployment.objects.filter(model=model, region=primary_region).exists():
        raise ValidationError({"primary_region": f"{primary_region.pk} has no deployment of {model}."})
    seconds = settings.SWITCHYARD_FAILBACK_AFTER_SECONDS if failback_after_seconds is None else failback_after_seconds
    policy = FailoverPolicy.objects.select_for_update().filter(pk=model).first()
    created = policy is None
    if created:
        policy = FailoverPolicy(model=model, primary_region=primary_region, active_region=primary_region)
    before = {"primary_region": policy.primary_region_id, "failback_after_seconds": policy.failback_after_seconds,
              "enabled": policy.enabled}
    policy.primary_region = primary_region
    policy.failback_after_seconds = seconds
    policy.enabled = enabled
    policy.full_clean()
    policy.save()
    after = {"primary_region": policy.primary_region_id, "failback_after_seconds": policy.failback_after_seconds,
             "enabled": policy.enabled}
    record_event(action="regions.failover_policy." + ("created" if created else "updated"), tenant_id=None,
                 actor=actor, resource_type="failover_policy", resource_id=model, request=request,
                 metadata={"changes": {k: [before[k], after[k]] for k in after if created or before[k] != after[k]}})
    return policy


@transaction.atomic
def delete_policy(*, actor, policy: FailoverPolicy, request=None) -> None:
    model = policy.model
    policy.delete()
    record_event(action="regions.failover_policy.deleted", tenant_id=None, actor=actor,
                 resource_type="failover_policy", resource_id=model, request=request)


# --- The router's side: cached region order ---------------------------------------------------------------------

_orders: dict[str, list[str]] = {}
_orders_read_at = 0.0


async def aregion_orders() -> dict[str, list[str]]:
    """{model: [region ids, preferred first]}, re-read from Redis at most every REGIONS_HEALTH_CACHE_SECONDS."""
    global _orders, _orders_read_at
    now = time.monotonic()
    if now - _orders_read_at < settings.REGIONS_HEALTH_CACHE_SECONDS:
        return _orders
    _orders_read_at = now
    try:
        raw = await get_async_redis().hgetall(_order_key())
    except RedisError:
        return _orders  # keep following the last order read
    _orders = {k.decode(): json.loads(v) for k, v in raw.items()}
    return _orders


async def aprefer_active(model: str, snapshots: list) -> list:
    """The router's candidates reordered by the model's region order (stable: priority order within a region).

    Only reorders: a deployment the router left out (residency, isolation, cool-down) never comes back."""
    if len(snapshots) < 2:
        return snapshots
    order = (await aregion_orders()).get(model)
    if not order:
        return snapshots
    rank = {region: index for index, region in enumerate(order)}
    return sorted(snapshots, key=lambda s: rank.get(s.region_id, len(rank)))


def forget_cached_orders() -> None:
    global _orders, _orders_read_at
    _orders, _orders_read_at = {}, 0.0
