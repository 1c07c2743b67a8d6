"""Active health checks: one cheap probe per deployment, all at once, with short timeouts.

Every SWITCHYARD_HEALTH_CHECK_SECONDS the beat runs `run_checks()`: it probes every enabled deployment
concurrently (asyncio, one event loop in one task), keeps the latest result per deployment in Redis (the
console and the failover evaluation read it) and adds it to a per-minute rollup row in Postgres (history).
After SWITCHYARD_HEALTH_PROBE_FAILURES failed probes in a row a deployment is put in the passive-health
cool-down (apps/regions/health.py), which the router already skips; a good probe ends a cool-down the probes
started, and a probe that sees a failing deployment recover ends any cool-down. Nothing piles up: the whole run
holds a Redis lock, each probe holds one for its deployment, every probe is bounded by a timeout, and the beat
entry expires before the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core.redis import get_redis, key

from . import health
from .models import Deployment, HealthCheckRollup

logger = logging.getLogger(__name__)

# Keep the current state a few intervals: a deployment nobody probes any more reads "unknown".
STATE_TTL_INTERVALS = 6


@dataclass(frozen=True, slots=True)
class Probe:
    deployment_id: str
    ok: bool
    latency_ms: float
    detail: str


@dataclass(frozen=True, slots=True)
class Target:
    """What a probe needs from a deployment, read once (credential decrypted) before the event loop starts."""

    id: str
    provider: str
    base_url: str
    api_key: str | None
    extra_headers: dict
    timeout: float


# How each provider kind is probed comes from its adapter in the gateway app (which sits above this
# one and registers them when it is ready), so a health check sends exactly what the adapter's own
# probe sends: same URL, same credential header.
_probe_requests: dict[str, Callable[[Target], tuple[str, dict[str, str]]]] = {}


def register_probe_request(kind: str, build: Callable[[Target], tuple[str, dict[str, str]]]) -> None:
    _probe_requests[kind] = build


def probe_request(target: Target) -> tuple[str, dict[str, str]]:
    """The URL and headers of the cheapest call that proves a deployment answers, per provider kind."""
    build = _probe_requests.get(target.provider)
    if build is None:
        raise LookupError(f"no probe for provider kind {target.provider!r}")
    return build(target)


async def probe(session: aiohttp.ClientSession, target: Target) -> Probe:
    """Never raises: a timeout, refused connection or error status is a failed probe with a reason."""
    started = time.perf_counter()

    def result(ok: bool, detail: str) -> Probe:
        return Probe(target.id, ok, round((time.perf_counter() - started) * 1000, 2), detail[:200])

    try:
        url, headers = probe_request(target)
    except LookupError as exc:
        return result(False, str(exc))

    try:
        async with asyncio.timeout(target.timeout):
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                await response.read()
                if response.status >= 400:
                    return result(False, f"HTTP {response.status}")
                return result(True, "healthy")
    except TimeoutError:
        return result(False, f"no answer within {target.timeout:g} s")
    except aiohttp.ClientError as exc:
        return result(False, f"connection failed: {exc.__class__.__name__}")


def _state_key(deployment_id) -> str:
    return key("health", "active", str(deployment_id))


def _probe_lock_key(deployment_id) -> str:
    return key("health", "probing", str(deployment_id))


def _run_lock_key() -> str:
    return key("health", "run-lock")


def current_state(deployment_ids) -> dict[str, dict]:
    """{deployment id: {"ok", "latency_ms", "detail", "checked_at", "failures", "healthy_since"}} from Redis."""
    ids = [str(d) for d in deployment_ids]
    if not ids:
        return {}
    try:
        pipe = get_redis().pipeline(transaction=False)
        for deployment_id in ids:
            pipe.hgetall(_state_key(deployment_id))
        rows = pipe.execute()
    except RedisError:
        logger.warning("active health state unreadable")
        return {}
    out = {}
    for deployment_id, row in zip(ids, rows, strict=True):
        if not row:
            continue
        values = {k.decode(): v.decode() for k, v in row.items()}
        out[deployment_id] = {
            "ok": values.get("ok") == "1",
            "latency_ms": float(values.get("latency_ms") or 0),
            "detail": values.get("detail", ""),
            "checked_at": float(values.get("checked_at") or 0),
            "failures": int(values.get("failures") or 0),
            "healthy_since": float(values["healthy_since"]) if values.get("healthy_since") else None,
        }
    return out


def _targets() -> list[Target]:
    targets = []
    timeout_cap = settings.SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS
    for deployment in Deployment.objects.routable():
        try:
            api_key = deployment.api_key
        except Exception:  # a credential that cannot be decrypted: probe without it and let the upstream say 401
            logger.error("deployment credential cannot be decrypted for its probe", extra={"deployment": str(deployment.pk)})
            api_key = None
        targets.append(Target(
            id=str(deployment.pk), provider=deployment.provider, base_url=deployment.base_url, api_key=api_key,
            extra_headers=dict(deployment.extra_headers or {}),
            timeout=min(float(deployment.timeout_seconds), timeout_cap),
        ))
    return targets


async def _probe_all(targets: list[Target]) -> list[Probe]:
    connector = aiohttp.TCPConnector(limit=200, force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers={"User-Agent": "Switchyard-HealthCheck/1.0"}) as session:
        return list(await asyncio.gather(*(probe(session, t) for t in targets)))


def _claim(targets: list[Target]) -> list[Target]:
    """The targets no other run is probing right now (one lock per deployment, released by expiry or after)."""
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    for target in targets:
        pipe.set(_probe_lock_key(target.id), "1", nx=True, ex=max(1, int(target.timeout) + 1))
    claimed = pipe.execute()
    return [t for t, ok in zip(targets, claimed, strict=True) if ok]


def _record(probes: list[Probe], now: float) -> None:
    """Latest result in Redis; streaks decide the cool-down; then the per-minute rollup in Postgres."""
    client = get_redis()
    ttl = settings.SWITCHYARD_HEALTH_CHECK_SECONDS * STATE_TTL_INTERVALS
    pipe = client.pipeline(transaction=False)
    for p in probes:
        pipe.hget(_state_key(p.deployment_id), "healthy_since")
        pipe.hget(_state_key(p.deployment_id), "failures")
    previous = pipe.execute()
    cooldown = settings.SWITCHYARD_HEALTH_CHECK_SECONDS * 3
    pipe = client.pipeline(transaction=False)
    for index, p in enumerate(probes):
        healthy_since, failures = previous[2 * index], previous[2 * index + 1]
        failures = 0 if p.ok else int(failures or 0) + 1
        since = (healthy_since.decode() if healthy_since else str(now)) if p.ok else ""
        name = _state_key(p.deployment_id)
        pipe.hset(name, mapping={"ok": "1" if p.ok else "0", "latency_ms": p.latency_ms, "detail": p.detail,
                                 "checked_at": now, "failures": failures, "healthy_since": since})
        pipe.expire(name, ttl)
        pipe.delete(_probe_lock_key(p.deployment_id))
    pipe.execute()
    for index, p in enumerate(probes):
        failures = previous[2 * index + 1]
        if not p.ok and int(failures or 0) + 1 >= settings.SWITCHYARD_HEALTH_PROBE_FAILURES:
            health.hold_cooldown(p.deployment_id, seconds=cooldown, source="probe")
        elif p.ok and int(failures or 0) > 0:
            # Seen to recover: whatever cool-down the outage started (by probes or by live traffic) ends now.
            health.end_cooldown(p.deployment_id)
        elif p.ok:
            # Probes were fine all along: a cool-down live traffic started stands (the upstream may answer its
            # health endpoint and still fail real calls); only one the probes started ends.
            health.end_probe_cooldown(p.deployment_id)
    _rollup(probes, now)


def _rollup(probes: list[Probe], now: float) -> None:
    if not probes:
        return
    minute = timezone.now().replace(second=0, microsecond=0)
    rows = [(str(uuid.UUID(p.deployment_id)), minute, 1, 0 if p.ok else 1, p.latency_ms, p.latency_ms) for p in probes]
    table = HealthCheckRollup._meta.db_table
    deployments = Deployment._meta.db_table
    # One statement for the whole run; a deployment deleted meanwhile is skipped, not an error. The table names
    # come from model metadata, never from input.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"""INSERT INTO {table} (deployment_id, minute, checks, failures, latency_ms_sum, latency_ms_max)
                SELECT %s::uuid, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM {deployments} WHERE id = %s::uuid)
                ON CONFLICT (deployment_id, minute) DO UPDATE SET
                  checks = {table}.checks + EXCLUDED.checks,
                  failures = {table}.failures + EXCLUDED.failures,
                  latency_ms_sum = {table}.latency_ms_sum + EXCLUDED.latency_ms_sum,
                  latency_ms_max = GREATEST({table}.latency_ms_max, EXCLUDED.latency_ms_max)""",  # noqa: S608
            [(*row, row[0]) for row in rows],
        )


def run_checks() -> list[Probe]:
    """Probe every routable deployment once; returns the probes made (none if another run holds the lock)."""
    client = get_redis()
    run_lock = _run_lock_key()
    token = uuid.uuid4().hex
    # The whole run must finish well within a probe timeout or two; the lock outlives a crashed run briefly.
    lock_seconds = int(settings.SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS * 2) + 5
    if not client.set(run_lock, token, nx=True, ex=lock_seconds):
        logger.info("health checks already running elsewhere; skipped")
        return []
    try:
        targets = _claim(_targets())
        probes = asyncio.run(_probe_all(targets)) if targets else []
        _record(probes, time.time())
        return probes
    finally:
        if client.get(run_lock) == token.encode():
            client.delete(run_lock)


def prune_history(*, days: int | None = None) -> int:
    cutoff = timezone.now() - timedelta(days=days or settings.SWITCHYARD_HEALTH_HISTORY_DAYS)
    deleted, _ = HealthCheckRollup.objects.filter(minute__lt=cutoff).delete()
    return deleted
