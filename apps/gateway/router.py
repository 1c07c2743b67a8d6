"""The router: which deployments may serve a tenant's model, in what order, and the call with fallback.

Routing reads an in-process table of deployment snapshots (credentials decrypted once per load), so the hot
path costs no Postgres round trip. The table is re-checked against a Redis version counter (bumped on any
Region/Deployment change) at most every ROUTER_VERSION_CHECK_SECONDS and reloaded when it changed or is
older than ROUTER_SNAPSHOT_MAX_AGE_SECONDS. Eligibility: the tenant's isolation mode picks dedicated and/or
shared deployments, its data residency limits the regions (never crossed, fallback included), and disabled
or cooling-down deployments are skipped. A failed call falls back to the next eligible deployment on a
retryable error (timeout, 429, 5xx, connection) or rejected credentials; a stream only before its first delta.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.dispatch import receiver

from apps.keys.errors import DecryptionError
from apps.regions import error_rate, failover, health
from apps.regions.selectors import arouting_version, routable_deployments
from apps.regions.signals import routing_changed

from .providers import ChatRequest, ChatResult, ProviderError, StreamDelta, get_provider

logger = logging.getLogger(__name__)

ANY_REGION = "any"


@dataclass(frozen=True, slots=True)
class DeploymentSnapshot:
    """Everything a call needs, immutable, with the credential decrypted (never shown in repr)."""

    id: str
    name: str
    model: str
    provider: str
    upstream_model: str
    base_url: str
    api_key: str | None = field(repr=False)
    extra_headers: Mapping[str, str] = field(repr=False, hash=False, compare=False)
    region_id: str = ""
    region_group: str = ""
    tenant_id: str | None = None
    priority: int = 100
    timeout_seconds: float = 30.0

    @property
    def dedicated(self) -> bool:
        return self.tenant_id is not None


@dataclass(slots=True)
class Attempt:
    """One try at one deployment, for metering, logs and the failover audit trail."""

    deployment_id: str
    deployment_name: str
    region_id: str
    ok: bool
    latency_ms: float
    error_kind: str | None = None
    status: int | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id, "deployment": self.deployment_name, "region": self.region_id,
            "ok": self.ok, "latency_ms": self.latency_ms, "error_kind": self.error_kind, "status": self.status,
            "message": self.message,
        }


class NoDeploymentAvailable(Exception):
    """No deployment answered: 503 none eligible or healthy, 502 upstreams failed, 504 all timed out.
    (UpstreamRejected, a subclass, carries 400/413 when the upstream refused the request itself.)"""

    def __init__(self, status: int, message: str, *, attempts: list[Attempt] | None = None,
                 retry_after: float | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.attempts = attempts or []
        self.retry_after = retry_after
        self.code = code or {503: "no_deployment", 502: "upstream_failed", 504: "upstream_timeout"}.get(status, "upstream_error")


class UpstreamRejected(NoDeploymentAvailable):
    """The upstream refused the request as invalid; another deployment would refuse it too."""


# Errors that may be this deployment's own problem, so another one may still answer.
FALLBACK_KINDS = frozenset({"timeout", "rate_limited", "server_error", "connection", "auth"})


# --- The routing table ------------------------------------------------------------------------------

@dataclass(slots=True)
class _Table:
    by_model: dict[str, list[DeploymentSnapshot]]
    version: int | None
    loaded_at: float
    checked_at: float


_table: _Table | None = None
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
_rotation = itertools.count()


def invalidate_cache() -> None:
    """Forget the routing table and health state; the next request reloads them."""
    global _table, _health
    _table = None
    _health = None


@receiver(routing_changed)
def _on_routing_changed(sender, **kwargs) -> None:
    invalidate_cache()


def snapshot_of(deployment) -> DeploymentSnapshot:
    return DeploymentSnapshot(
        id=str(deployment.pk),
        name=deployment.name,
        model=deployment.model,
        provider=deployment.provider,
        upstream_model=deployment.upstream_model or deployment.model,
        base_url=deployment.base_url,
        api_key=deployment.api_key or None,
        extra_headers=MappingProxyType(dict(deployment.extra_headers or {})),
        region_id=deployment.region_id,
        region_group=deployment.region.group,
        tenant_id=deployment.tenant_id,
        priority=deployment.priority,
        timeout_seconds=float(deployment.timeout_seconds),
    )


def _load_table(version: int | None) -> _Table:
    by_model: dict[str, list[DeploymentSnapshot]] = {}
    for deployment in routable_deployments():
        try:
            snapshot = snapshot_of(deployment)
        except DecryptionError:
            # A destroyed or foreign key: this deployment cannot authenticate, the rest still route.
            logger.error("deployment credential cannot be decrypted; skipped", extra={"deployment": str(deployment.pk)})
            continue
        by_model.setdefault(snapshot.model, []).append(snapshot)
    for snapshots in by_model.values():
        snapshots.sort(key=lambda s: (s.priority, s.name))
    now = time.monotonic()
    return _Table(by_model=by_model, version=version, loaded_at=now, checked_at=now)


def _lock(name: str = "table") -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    locks = _locks.get(loop)
    if locks is None:
        locks = _locks[loop] = {}
    lock = locks.get(name)
    if lock is None:
        lock = locks[name] = asyncio.Lock()
    return lock


async def _routing_table() -> _Table:
    global _table
    table = _table
    now = time.monotonic()
    if table is not None and now - table.checked_at < settings.ROUTER_VERSION_CHECK_SECONDS:
        return table
    lock = _lock()
    if table is not None and lock.locked() and now - table.loaded_at < settings.ROUTER_SNAPSHOT_MAX_AGE_SECONDS:
        # Another request is already checking: serve this one from the current table instead of queueing
        # behind a Redis or Postgres round trip (which could be slow while either is in trouble).
        return table
    async with lock:
        table = _table
        now = time.monotonic()
        if table is not None and now - table.checked_at < settings.ROUTER_VERSION_CHECK_SECONDS:
            return table
        version = await arouting_version()
        fresh = table is not None and now - table.loaded_at < settings.ROUTER_SNAPSHOT_MAX_AGE_SECONDS
        if fresh and (version is None or version == table.version):
            table.checked_at = now
            return table
        try:
            table = await sync_to_async(_load_table, thread_sensitive=True)(version)
        except Exception:
            if _table is None:
                logger.exception("routing table cannot be loaded")
                raise NoDeploymentAvailable(503, "Routing is unavailable: deployments cannot be read right now.") from None
            # Serving from a slightly stale table beats refusing traffic while Postgres blips.
            logger.exception("routing table reload failed; keeping the previous one")
            _table.checked_at = now
            return _table
        _table = table
        return table


# --- Eligibility --------------------------------------------------------------------------------------

def _allowed(tenant, snapshots: list[DeploymentSnapshot]) -> list[DeploymentSnapshot]:
    """The snapshots this tenant may use, in routing order, before health is considered."""
    residency = getattr(tenant, "data_residency", ANY_REGION) or ANY_REGION
    mode = getattr(tenant, "isolation_mode", "shared")
    tenant_id = str(tenant.id)
    dedicated: list[DeploymentSnapshot] = []
    shared: list[DeploymentSnapshot] = []
    for snapshot in snapshots:
        if residency != ANY_REGION and snapshot.region_group != residency:
            continue
        if snapshot.tenant_id is None:
            shared.append(snapshot)
        elif snapshot.tenant_id == tenant_id:
            dedicated.append(snapshot)
    if mode == "strict":
        return _spread(dedicated)
    if mode == "hybrid":
        return _spread(dedicated) + _spread(shared)
    return _spread(shared)


def _spread(snapshots: list[DeploymentSnapshot]) -> list[DeploymentSnapshot]:
    """Rotate deployments of equal priority so they share the load; lower priority still goes first."""
    if len(snapshots) < 2:
        return snapshots
    out: list[DeploymentSnapshot] = []
    for _, group in itertools.groupby(snapshots, key=lambda s: s.priority):
        members = list(group)
        if len(members) > 1:
            shift = next(_rotation) % len(members)
            members = members[shift:] + members[:shift]
        out.extend(members)
    return out


# --- Health, as this process last read it ------------------------------------------------------------

@dataclass(slots=True)
class _Health:
    state: dict[str, tuple[bool, bool]]
    table: _Table
    read_at: float


_health: _Health | None = None


async def _health_state(table: _Table) -> dict[str, tuple[bool, bool]]:
    """{deployment id: (cooling down, failure streak)} for every routable deployment, read from Redis at most
    every REGIONS_HEALTH_CACHE_SECONDS per process (one MGET, shared by every request waiting on it), so a
    burst of requests costs no Redis round trip each. This process's own failures update it at once."""
    global _health
    cached = _health
    max_age = settings.REGIONS_HEALTH_CACHE_SECONDS
    if cached is not None and cached.table is table and time.monotonic() - cached.read_at < max_age:
        return cached.state
    lock = _lock("health")
    if cached is not None and cached.table is table and lock.locked():
        return cached.state
    async with lock:
        cached = _health
        if cached is not None and cached.table is table and time.monotonic() - cached.read_at < max_age:
            return cached.state
        ids = [s.id for snapshots in table.by_model.values() for s in snapshots]
        state = await health.ahealth_state(ids)
        _health = _Health(state=state, table=table, read_at=time.monotonic())
        return state


def _note_locally(deployment_id: str, *, cooling: bool | None = None, streak: bool | None = None) -> None:
    cached = _health
    if cached is None:
        return
    was_cooling, had_streak = cached.state.get(deployment_id, (False, False))
    now = (was_cooling if cooling is None else cooling, had_streak if streak is None else streak)
    if now == (False, False):
        cached.state.pop(deployment_id, None)
    else:
        cached.state[deployment_id] = now


async def _eligible(tenant, model: str) -> tuple[list[DeploymentSnapshot], dict[str, tuple[bool, bool]], int]:
    table = await _routing_table()
    allowed = _allowed(tenant, table.by_model.get(model, []))
    if not allowed:
        return [], {}, 0
    state = await _health_state(table)
    healthy = [s for s in allowed if not state.get(s.id, (False, False))[0]]
    # Failover: the model's active region first, then the other healthy regions by probe latency.
    healthy = await failover.aprefer_active(model, healthy)
    return healthy, state, len(allowed)


async def eligible_deployments(tenant, model: str) -> list[DeploymentSnapshot]:
    """Deployments that may serve this tenant's request for `model`, in the order to try them.

    `tenant`: anything with .id, .isolation_mode (strict/hybrid/shared) and .data_residency (any/us/eu/apac)."""
    healthy, _state, _count = await _eligible(tenant, model)
    return healthy


async def available_models(tenant) -> list[str]:
    """Models this tenant can be routed to (health aside), narrowed by its allow-list if it has one."""
    table = await _routing_table()
    allow = set(getattr(tenant, "allowed_models", None) or ())
    return sorted(
        model for model, snapshots in table.by_model.items()
        if (not allow or model in allow) and _allowed(tenant, snapshots)
    )


def _none_eligible(tenant, model: str, count: int) -> NoDeploymentAvailable:
    residency = getattr(tenant, "data_residency", ANY_REGION)
    where = "" if residency in (None, ANY_REGION) else f" in the tenant's residency ({residency})"
    if count:
        # Residency is never crossed, even when another region is healthy: say so rather than only "retry".
        return NoDeploymentAvailable(
            503, f"Every deployment of model '{model}' available to this tenant{where} is cooling down after "
                 "failures; no healthy region it may use is left. Retry shortly.",
            retry_after=float(settings.REGIONS_HEALTH_COOLDOWN_SECONDS))
    return NoDeploymentAvailable(503, f"No deployment of model '{model}' is available to this tenant{where}.")


# --- Calls with fallback ------------------------------------------------------------------------------

def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _failed(snapshot: DeploymentSnapshot, exc: ProviderError, started: float) -> Attempt:
    return Attempt(
        deployment_id=snapshot.id, deployment_name=snapshot.name, region_id=snapshot.region_id, ok=False,
        latency_ms=_elapsed_ms(started), error_kind=exc.kind, status=exc.status, message=exc.message,
    )


def _succeeded(snapshot: DeploymentSnapshot, started: float) -> Attempt:
    return Attempt(deployment_id=snapshot.id, deployment_name=snapshot.name, region_id=snapshot.region_id,
                   ok=True, latency_ms=_elapsed_ms(started))


def _rejected(exc: ProviderError, attempts: list[Attempt]) -> NoDeploymentAvailable:
    """A non-fallback error: the upstream judged the request itself."""
    if exc.status in (400, 422):
        return UpstreamRejected(400, f"The model rejected the request: {exc.message}", attempts=attempts,
                                code="upstream_rejected")
    if exc.status == 413:
        return UpstreamRejected(413, f"The model rejected the request as too large: {exc.message}",
                                attempts=attempts, code="upstream_rejected")
    return NoDeploymentAvailable(502, f"The upstream refused the call: {exc.message}", attempts=attempts)


def _exhausted(model: str, attempts: list[Attempt]) -> NoDeploymentAvailable:
    failures = [a for a in attempts if not a.ok]
    where = ", ".join(f"{a.deployment_name} ({a.error_kind})" for a in failures)
    if failures and all(a.error_kind == "timeout" for a in failures):
        return NoDeploymentAvailable(504, f"Every deployment of model '{model}' timed out: {where}.", attempts=attempts)
    return NoDeploymentAvailable(
        502, f"No deployment of model '{model}' could answer: {where}. Last error: {failures[-1].message}",
        attempts=attempts,
    )


async def _note_failure(snapshot: DeploymentSnapshot, exc: ProviderError) -> None:
    logger.warning(
        "upstream call failed",
        extra={"deployment": snapshot.id, "region": snapshot.region_id, "kind": exc.kind, "status": exc.status},
    )
    started = await health.arecord_failure(snapshot.id)
    if not started and error_rate.note_failure(snapshot.id):
        # Not three in a row, but a large share of recent calls failed: cool down all the same.
        await error_rate.astart_cooldown(snapshot.id)
        started = True
    _note_locally(snapshot.id, cooling=True if started else None, streak=not started)


async def _reset_streak(deployment_id: str) -> None:
    await health.arecord_success(deployment_id)
    _note_locally(deployment_id, streak=False)


async def complete_with_fallback(tenant, request: ChatRequest) -> tuple[ChatResult, DeploymentSnapshot, list[Attempt]]:
    """The answer, the deployment that gave it, and every attempt made; raises NoDeploymentAvailable."""
    candidates, state, count = await _eligible(tenant, request.model)
    if not candidates:
        raise _none_eligible(tenant, request.model, count)
    attempts: list[Attempt] = []
    for snapshot in candidates:
        provider = get_provider(snapshot.provider)
        started = time.perf_counter()
        try:
            result = await provider.complete(snapshot, request)
        except ProviderError as exc:
            attempts.append(_failed(snapshot, exc, started))
            if exc.kind not in FALLBACK_KINDS:
                raise _rejected(exc, attempts) from None
            await _note_failure(snapshot, exc)
            continue
        attempts.append(_succeeded(snapshot, started))
        error_rate.note_success(snapshot.id)
        if state.get(snapshot.id, (False, False))[1]:
            await _reset_streak(snapshot.id)
        return result, snapshot, attempts
    raise _exhausted(request.model, attempts)


class DeltaStream:
    """The deltas of the stream that got through, starting with the one that proved it works.

    Close it (`await stream.aclose()`, or iterate to the end) on every path: closing closes the upstream
    connection, which is how a client disconnect stops the upstream's generation."""

    def __init__(self, first: StreamDelta, rest: AsyncIterator[StreamDelta], snapshot: DeploymentSnapshot,
                 attempts: list[Attempt], had_streak: bool):
        self._first: StreamDelta | None = first
        self._rest = rest
        self.snapshot = snapshot
        self.attempts = attempts
        self._had_streak = had_streak
        self._done = first.finish_reason is not None

    def __aiter__(self) -> DeltaStream:
        return self

    async def __anext__(self) -> StreamDelta:
        if self._first is not None:
            first, self._first = self._first, None
            if self._done:
                await self._finish()
            return first
        if self._done:
            raise StopAsyncIteration
        try:
            delta = await self._rest.__anext__()
        except StopAsyncIteration:
            self._done = True
            await self._finish()
            raise
        except ProviderError as exc:
            # Past the first delta the client already has output: no fallback, but the failure counts.
            self._done = True
            await self.aclose()
            await _note_failure(self.snapshot, exc)
            raise
        if delta.finish_reason is not None:
            self._done = True
            await self._finish()
        return delta

    async def _finish(self) -> None:
        await self.aclose()
        if self._had_streak:
            self._had_streak = False
            await _reset_streak(self.snapshot.id)

    async def aclose(self) -> None:
        closer = getattr(self._rest, "aclose", None)
        if closer is not None:
            await closer()


async def stream_with_fallback(tenant, request: ChatRequest) -> tuple[DeploymentSnapshot, DeltaStream]:
    """A deployment and its live stream, found by trying candidates until one yields its first delta."""
    candidates, state, count = await _eligible(tenant, request.model)
    if not candidates:
        raise _none_eligible(tenant, request.model, count)
    attempts: list[Attempt] = []
    for snapshot in candidates:
        provider = get_provider(snapshot.provider)
        started = time.perf_counter()
        deltas = provider.stream(snapshot, request)
        try:
            first = await deltas.__anext__()
        except StopAsyncIteration:
            first = StreamDelta(text="", finish_reason="stop")
        except ProviderError as exc:
            await deltas.aclose()
            attempts.append(_failed(snapshot, exc, started))
            if exc.kind not in FALLBACK_KINDS:
                raise _rejected(exc, attempts) from None
            await _note_failure(snapshot, exc)
            continue
        except BaseException:
            await deltas.aclose()
            raise
        attempts.append(_succeeded(snapshot, started))
        error_rate.note_success(snapshot.id)
        return snapshot, DeltaStream(first, deltas, snapshot, attempts, state.get(snapshot.id, (False, False))[1])
    raise _exhausted(request.model, attempts)
