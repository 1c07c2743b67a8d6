"""Quota violations: counted in Redis on the hot path, written to Postgres, audited and alerted
by a periodic task, so a tenant hammering its limit costs one Redis call per refusal and can
flood neither the database, the audit log nor its admins' inboxes.

Per refusal (`record_violation`): one Redis script increments the count of (tenant, UTC minute,
scope, key, limit) in a hash and marks the minute dirty.

Every SWITCHYARD_BEAT interval (`flush_violations`):
- each dirty minute's counts are upserted into QuotaViolation (absolute counts: a repeated or
  concurrent flush writes the same numbers);
- once a minute has closed (with a minute's grace for stragglers) it gets ONE audit event
  (action "gateway.quota_violation", per tenant and minute, counts by limit in metadata) and its
  Redis hash is dropped;
- a notification goes to the tenant's channels at most once per tenant and limit per
  SWITCHYARD_VIOLATION_NOTIFY_MINUTES.
If Redis is unreachable when a refusal happens, the violation is logged and not counted (the
refusal itself still stands).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

from celery import shared_task
from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from apps.core.redis import get_redis, key

from .quotas import get_async_redis  # the waiting pool: a burst of refusals queues, never fails

logger = logging.getLogger(__name__)

GRACE_MINUTES = 1
HASH_TTL_SECONDS = 86400

# KEYS: the minute's hash, the dirty set. ARGV: field suffix, limit, request id, dirty member.
RECORD_LUA = """
redis.call('HINCRBY', KEYS[1], 'c|' .. ARGV[1], 1)
redis.call('HSET', KEYS[1], 'l|' .. ARGV[1], ARGV[2], 'r|' .. ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[4])
return 1
"""

_pending: set[asyncio.Task] = set()


def _minute_hash(tenant_id: str, minute: int) -> str:
    return key("viol", tenant_id, minute)


def _dirty_set() -> str:
    return key("viol", "dirty")


def _call_args(tenant_id, key_id, reason, limit, request_id, scope):
    tenant_id = str(tenant_id)
    minute = int(time.time()) // 60
    if not scope and "." in reason:  # "key.requests_per_minute" names its scope
        scope = reason.split(".", 1)[0]
    reason = reason.split(".", 1)[-1]
    suffix = f"{scope}|{key_id or ''}|{reason}"
    keys = [_minute_hash(tenant_id, minute), _dirty_set()]
    args = [suffix, "" if limit is None else int(limit), str(request_id)[:128], f"{tenant_id}|{minute}",
            HASH_TTL_SECONDS]
    return keys, args


async def arecord_violation(*, tenant_id, key_id, reason: str, limit, request_id, scope: str = "") -> None:
    """record_violation for async callers (one Redis round trip; never raises)."""
    keys, args = _call_args(tenant_id, key_id, reason, limit, request_id, scope)
    client = get_async_redis()
    try:
        script = getattr(client, "_switchyard_violation_script", None)
        if script is None:
            script = client._switchyard_violation_script = client.register_script(RECORD_LUA)
        await script(keys=keys, args=args)
    except (TimeoutError, RedisError, OSError) as exc:
        logger.warning("quota violation not counted: Redis unavailable",
                       extra={"tenant_id": str(tenant_id), "reason": reason, "error": exc.__class__.__name__})


def record_violation(*, tenant_id, key_id, reason: str, limit, request_id, scope: str = ""):
    """Count one quota refusal. `scope` is "tenant" or "key" (whose limit refused).

    Inside a running event loop the Redis call is scheduled as a task and the task is returned:
    await it, or let it finish in the background. Outside a loop it runs now. Never raises."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        task = loop.create_task(arecord_violation(tenant_id=tenant_id, key_id=key_id, reason=reason, limit=limit,
                                                  request_id=request_id, scope=scope))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        return task
    keys, args = _call_args(tenant_id, key_id, reason, limit, request_id, scope)
    try:
        get_redis().eval(RECORD_LUA, len(keys), *keys, *args)
    except (RedisError, OSError) as exc:
        logger.warning("quota violation not counted: Redis unavailable",
                       extra={"tenant_id": str(tenant_id), "reason": reason, "error": exc.__class__.__name__})
    return None


# --- The periodic flush -------------------------------------------------------------------------


def _parse(data: dict) -> list[dict]:
    rows: dict[str, dict] = defaultdict(dict)
    for raw_field, raw_value in data.items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
        kind, suffix = field.split("|", 1)
        rows[suffix][kind] = value
    out = []
    for suffix, values in rows.items():
        scope, key_id, reason = suffix.split("|", 2)
        limit = values.get("l")
        out.append({
            "scope": scope, "key_id": key_id, "reason": reason, "count": int(values.get("c", 0)),
            "limit": int(limit) if limit not in (None, "") else None, "last_request_id": values.get("r", ""),
        })
    return out


def _tenant_ids_present(tenant_ids: set[str]) -> set[str]:
    from apps.tenants.models import Tenant

    return set(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", flat=True))


def flush_minute(*, tenant_id: str, minute: int, rows: list[dict], closed: bool) -> list[str]:
    """Write one tenant-minute's counts; audit it when closed. Returns the reasons newly seen."""
    from apps.audit.services import record_event
    from apps.core.models import QuotaViolation

    minute_at = datetime.fromtimestamp(minute * 60, tz=UTC)
    with transaction.atomic():
        existing = {
            (v.scope, v.key_id, v.reason): v
            for v in QuotaViolation.objects.select_for_update().filter(tenant_id=tenant_id, minute=minute_at)
        }
        new_reasons = []
        for row in rows:
            found = existing.get((row["scope"], row["key_id"], row["reason"]))
            if found is None:
                found = QuotaViolation.objects.create(tenant_id=tenant_id, minute=minute_at, **row)
                existing[(row["scope"], row["key_id"], row["reason"])] = found
                new_reasons.append(row["reason"])
            elif found.count != row["count"] or found.limit != row["limit"]:
                QuotaViolation.objects.filter(pk=found.pk).update(
                    count=max(found.count, row["count"]), limit=row["limit"], last_request_id=row["last_request_id"]
                )
        if closed and not any(v.audited for v in existing.values()):
            by_reason: dict[str, int] = defaultdict(int)
            for row in rows:
                by_reason[f"{row['scope']}.{row['reason']}" if row["scope"] else row["reason"]] += row["count"]
            keys = sorted({row["key_id"] for row in rows if row["key_id"]})
            record_event(
                action="gateway.quota_violation", tenant_id=tenant_id, result="denied",
                resource_type="tenant", resource_id=tenant_id,
                metadata={"minute": minute_at.isoformat(), "refusals": dict(by_reason),
                          "total": sum(by_reason.values()), "api_keys": keys[:20]},
            )
            QuotaViolation.objects.filter(tenant_id=tenant_id, minute=minute_at).update(audited=True)
    return new_reasons


def _alert(tenant_id: str, reasons: list[str], rows: list[dict]) -> None:
    from apps.core.notifications import notify

    minutes = settings.SWITCHYARD_VIOLATION_NOTIFY_MINUTES
    for reason in sorted(set(reasons)):
        limits = sorted({row["limit"] for row in rows if row["reason"] == reason and row["limit"] is not None})
        count = sum(row["count"] for row in rows if row["reason"] == reason)
        label = reason.replace("_", " ")
        notify(
            tenant_id=tenant_id, event="quota.violation", severity="warning",
            title=f"Quota reached: {label}",
            message=(f"Requests of tenant {tenant_id} are being refused (HTTP 429) because the {label} limit"
                     f"{' of ' + ', '.join(str(v) for v in limits) if limits else ''} was reached "
                     f"({count} refused in the last minute so far). Further alerts for this limit are held for "
                     f"{minutes} minutes."),
            link=f"/gateway/{tenant_id}/violations/",
            dedup_key=f"quota-violation:{reason}", dedup_seconds=minutes * 60,
        )


def flush_violations(*, now: float | None = None) -> dict[str, int]:
    """Move Redis violation counts to Postgres; audit closed minutes; alert. Safe to run twice.
    (`now` lets a test close the current minute without waiting for it.)"""
    client = get_redis()
    # One flush at a time across workers: two would race to create the same rows.
    lock = client.lock(key("viol", "flush-lock"), timeout=120, blocking=False)
    if not lock.acquire():
        return {"minutes": 0, "audited": 0, "skipped": 1}
    try:
        return _flush(client, now)
    finally:
        try:
            lock.release()
        except RedisError:  # expired while flushing a large backlog: the next run continues
            logger.warning("violation flush lock expired before release")


def _flush(client, now: float | None) -> dict[str, int]:
    members = [m.decode() for m in client.smembers(_dirty_set())]
    if not members:
        return {"minutes": 0, "audited": 0}
    current = int(now if now is not None else time.time()) // 60
    parsed = []
    for member in members:
        tenant_id, _, minute = member.rpartition("|")
        parsed.append((tenant_id, int(minute), member))
    present = _tenant_ids_present({tenant_id for tenant_id, _, _ in parsed})
    flushed = audited = 0
    for tenant_id, minute, member in sorted(parsed, key=lambda item: item[1]):
        hash_key = _minute_hash(tenant_id, minute)
        closed = minute < current - GRACE_MINUTES
        if tenant_id not in present:
            if closed:  # a deleted or unknown tenant: nothing to write to
                client.delete(hash_key)
                client.srem(_dirty_set(), member)
            continue
        rows = _parse(client.hgetall(hash_key))
        if rows:
            try:
                new_reasons = flush_minute(tenant_id=tenant_id, minute=minute, rows=rows, closed=closed)
            except Exception:
                logger.exception("quota violations could not be written", extra={"tenant_id": tenant_id})
                continue
            flushed += 1
            audited += closed
            if new_reasons:
                _alert(tenant_id, new_reasons, rows)
        if closed:
            client.delete(hash_key)
            client.srem(_dirty_set(), member)
    return {"minutes": flushed, "audited": audited}


@shared_task(name="apps.gateway.violations.flush_violations", acks_late=True)
def flush_violations_task() -> dict[str, int]:
    return flush_violations()


def current_counts(*, tenant_id: str) -> list[dict]:
    """Refusals of the tenant not yet flushed (the last minute or two), for the console."""
    client = get_redis()
    current = int(time.time()) // 60
    out = []
    for minute in (current - 1, current):
        for row in _parse(client.hgetall(_minute_hash(str(tenant_id), minute))):
            row["minute"] = datetime.fromtimestamp(minute * 60, tz=UTC)
            out.append(row)
    return out


def purge_old_violations(*, now: datetime | None = None) -> int:
    """Drop violation rows older than SWITCHYARD_VIOLATION_RETENTION_DAYS (their audit events stay)."""
    from datetime import timedelta

    from apps.core.models import QuotaViolation

    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.SWITCHYARD_VIOLATION_RETENTION_DAYS)
    deleted, _ = QuotaViolation.objects.filter(minute__lt=cutoff).delete()
    return deleted


@shared_task(name="apps.gateway.violations.purge_old_violations", acks_late=True)
def purge_old_violations_task() -> int:
    return purge_old_violations()
