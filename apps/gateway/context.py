"""Hot-path lookups: who is calling (API key or access token) and the tenant they act for.

Both are snapshots cached in Redis for a few seconds, read together in one MGET, so a request
costs no Postgres round trip. Revoking a key overwrites its cache entry with a tombstone that
cache fills cannot replace (they use SET NX), so a revoked key stops working at once in every
process; tenant changes delete the tenant's entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from importlib.util import find_spec

import orjson
from asgiref.sync import sync_to_async
from redis.exceptions import RedisError

from apps.core.redis import get_async_redis, get_redis, key

from .quotas import hot_path_batch

KEY_CACHE_SECONDS = 30
TENANT_CACHE_SECONDS = 10
NEGATIVE_CACHE_SECONDS = 10
TOMBSTONE = b"-"
_KEY_TENANT: dict[str, str] = {}

# Access tokens from the identity app are accepted too, when that app ships them.
authenticate_access_token = None
if find_spec("apps.accounts.tokens") is not None:
    from apps.accounts import tokens as _access_tokens

    authenticate_access_token = getattr(_access_tokens, "authenticate_access_token", None) or getattr(
        _access_tokens, "principal_for", None
    )


@dataclass(frozen=True)
class KeySnapshot:
    id: str | None
    tenant_id: str | None
    user_id: int | None
    department_id: int | None
    project_id: int | None
    prefix: str
    is_platform_service: bool
    expires_at: float | None
    limits: tuple  # (rpm, rpd, tokens per month, max concurrent); None = no per-key limit
    kind: str = "api_key"

    @property
    def pk(self):
        return self.id

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())


@dataclass(frozen=True)
class TenantContext:
    """What the pipeline and the router need to know about a tenant (any object with .id,
    .isolation_mode and .data_residency satisfies the router)."""

    id: str
    status: str
    isolation_mode: str
    data_residency: str
    limits: tuple
    allowed_models: tuple
    store_content: bool
    encrypt_content: bool
    redis_outage_mode: str
    departments: dict = field(default_factory=dict)  # code -> id
    projects: dict = field(default_factory=dict)  # code -> id
    members: dict = field(default_factory=dict)  # user id (str) -> role

    def allows_model(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_cache_key(hashed: str) -> str:
    return key("gw", "apikey", hashed)


def tenant_cache_key(tenant_id: str) -> str:
    return key("gw", "tenant", tenant_id)


# --- loading from Postgres (off the hot path, on a cache miss) -----------------------------

def load_key_snapshot(hashed: str) -> KeySnapshot | None:
    from .models import ApiKey

    api_key = ApiKey.objects.filter(hashed_key=hashed).first()
    if api_key is None or api_key.revoked_at is not None:
        return None
    return snapshot_of_key(api_key)


def snapshot_of_key(api_key) -> KeySnapshot:
    return KeySnapshot(
        id=str(api_key.pk),
        tenant_id=api_key.tenant_id,
        user_id=api_key.user_id,
        department_id=api_key.department_id,
        project_id=api_key.project_id,
        prefix=api_key.prefix,
        is_platform_service=api_key.is_platform_service,
        expires_at=api_key.expires_at.timestamp() if api_key.expires_at else None,
        limits=(api_key.requests_per_minute, api_key.requests_per_day, api_key.tokens_per_month, api_key.max_concurrent),
    )


def load_tenant_context(tenant_id: str) -> TenantContext | None:
    from apps.tenants.models import Department, Membership, Project, Tenant

    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return None
    return TenantContext(
        id=tenant.pk,
        status=tenant.status,
        isolation_mode=tenant.isolation_mode,
        data_residency=tenant.data_residency,
        limits=(tenant.requests_per_minute, tenant.requests_per_day, tenant.tokens_per_month, tenant.max_concurrent),
        allowed_models=tuple(tenant.allowed_models or ()),
        store_content=tenant.store_content,
        encrypt_content=tenant.encrypt_content,
        redis_outage_mode=tenant.redis_outage_mode,
        departments=dict(Department.objects.filter(tenant_id=tenant_id).values_list("code", "id")),
        projects=dict(Project.objects.filter(tenant_id=tenant_id).values_list("code", "id")),
        members={str(u): r for u, r in Membership.objects.filter(tenant_id=tenant_id).values_list("user_id", "role")},
    )


def _dump(snapshot) -> bytes:
    return orjson.dumps(snapshot.__dict__)


# Snapshots decoded from the cached bytes, by those bytes: the same bytes always decode to the same
# (immutable, never mutated) snapshot, so a request whose cache entry has not changed skips the JSON
# decode and the dataclass build. Any change to an entry (a revocation, a tenant edit) changes the bytes.
_DECODED_MAX = 2048  # keys
_DECODED_TENANTS_MAX = 256  # tenants (bigger: their member lists)
_decoded_keys: dict[bytes, KeySnapshot] = {}
_decoded_tenants: dict[bytes, TenantContext] = {}


def _key_from(raw: bytes) -> KeySnapshot:
    found = _decoded_keys.get(raw)
    if found is not None:
        return found
    data = orjson.loads(raw)
    data["limits"] = tuple(data["limits"])
    snapshot = KeySnapshot(**data)
    if len(_decoded_keys) >= _DECODED_MAX:
        _decoded_keys.clear()
    _decoded_keys[raw] = snapshot
    return snapshot


def _tenant_from(raw: bytes) -> TenantContext:
    found = _decoded_tenants.get(raw)
    if found is not None:
        return found
    data = orjson.loads(raw)
    data["limits"] = tuple(data["limits"])
    data["allowed_models"] = tuple(data["allowed_models"])
    context = TenantContext(**data)
    if len(_decoded_tenants) >= _DECODED_TENANTS_MAX:
        _decoded_tenants.clear()
    _decoded_tenants[raw] = context
    return context


# --- the hot path ----------------------------------------------------------------------------

_redis_down_until = 0.0
BREAKER_SECONDS = 1.0


def redis_down() -> bool:
    """True for a second after a Redis failure, so an outage costs no connect timeout per request."""
    return time.monotonic() < _redis_down_until


def trip_breaker() -> None:
    global _redis_down_until
    _redis_down_until = time.monotonic() + BREAKER_SECONDS


class _Down(RedisError):
    pass


def _check_breaker() -> None:
    if redis_down():
        raise _Down("redis marked down")


async def lookup_key(secret: str, tenant_hint: str | None = None) -> tuple[KeySnapshot | None, TenantContext | None]:
    """The key's snapshot (None if unknown or revoked) and, in the same round trip, the
    snapshot of `tenant_hint` or of the key's own tenant when it is cached."""
    hashed = hash_key(secret)
    # A key's tenant never changes, so remembering it here is safe and lets the first request
    # of a key fetch both snapshots in one round trip.
    tenant_hint = tenant_hint or _KEY_TENANT.get(hashed)
    ck = key_cache_key(hashed)
    raw_key, raw_tenant = None, None
    try:
        _check_breaker()
        if tenant_hint:
            raw_key, raw_tenant = await hot_path_batch().call("MGET", ck, tenant_cache_key(tenant_hint))
        else:
            raw_key = await hot_path_batch().call("GET", ck)
    except RedisError as exc:
        if not isinstance(exc, _Down):
            trip_breaker()
        # Redis is down: Postgres is the source of truth (slower, but a revoked key stays refused
        # and a tenant in the degraded mode keeps working; admission decides the rest).
        snapshot = await _single_flight(("key", hashed), load_key_snapshot, hashed)
        return snapshot, None
    if raw_key == TOMBSTONE:
        return None, None
    if raw_key is None:
        snapshot = await _single_flight(("key", hashed), load_key_snapshot, hashed)
        if snapshot is None:
            await _fill(ck, TOMBSTONE, NEGATIVE_CACHE_SECONDS)
            return None, None
        await _fill(ck, _dump(snapshot), KEY_CACHE_SECONDS)
    else:
        snapshot = _key_from(raw_key)
    if snapshot.tenant_id and len(_KEY_TENANT) < 100_000:
        _KEY_TENANT[hashed] = snapshot.tenant_id
    tenant = _tenant_from(raw_tenant) if raw_tenant and raw_tenant != TOMBSTONE else None
    if raw_key is not None and tenant is not None:
        if len(_remembered) >= _REMEMBERED_MAX:
            _remembered.clear()
        _remembered[(hashed, tenant_hint)] = (raw_key, raw_tenant)
    return snapshot, tenant


# The key and tenant cache entries this process last read, by (hashed key, tenant). A request
# whose key is in here decides on these snapshots at once and sends the admission together with a
# read of both entries (quotas.admit's `verify`): when either has changed (a revocation, a tenant
# edit, an expiry), the admission is undone and the request takes the full path. So a revoked key
# is still refused at once in every process, and a request costs one round trip to Redis, not two.
_REMEMBERED_MAX = 4096
_remembered: dict[tuple[str, str], tuple[bytes, bytes]] = {}


def remembered(secret: str, tenant_hint: str | None):
    """(key snapshot, tenant context, what to verify, the entry's name for forget_remembered) from
    the entries last read for this key and tenant, or None. Nothing here is trusted until `verify`
    is checked in Redis."""
    hashed = hash_key(secret)
    tenant_hint = tenant_hint or _KEY_TENANT.get(hashed)
    if not tenant_hint:
        return None
    found = _remembered.get((hashed, tenant_hint))
    if found is None:
        return None
    raw_key, raw_tenant = found
    verify = ((key_cache_key(hashed), tenant_cache_key(tenant_hint)), found)
    return _key_from(raw_key), _tenant_from(raw_tenant), verify, (hashed, tenant_hint)


def forget_remembered(name: tuple[str, str]) -> None:
    _remembered.pop(name, None)


async def get_tenant_context(tenant_id: str) -> TenantContext | None:
    ck = tenant_cache_key(tenant_id)
    try:
        _check_breaker()
        raw = await hot_path_batch().call("GET", ck)
    except RedisError as exc:
        if not isinstance(exc, _Down):
            trip_breaker()
        return await _single_flight(("tenant", tenant_id), load_tenant_context, tenant_id)
    if raw == TOMBSTONE:
        return None
    if raw is not None:
        return _tenant_from(raw)
    context = await _single_flight(("tenant", tenant_id), load_tenant_context, tenant_id)
    if context is None:
        await _fill(ck, TOMBSTONE, NEGATIVE_CACHE_SECONDS)
        return None
    await _fill(ck, _dump(context), TENANT_CACHE_SECONDS)
    return context


_in_flight: dict[tuple, asyncio.Future] = {}


async def _single_flight(name: tuple, loader, *args):
    """One Postgres load per name at a time in this process: a burst of requests for a key that
    is not cached yet waits for the same query instead of queueing a thousand of them."""
    future = _in_flight.get(name)
    if future is None or future.get_loop() is not asyncio.get_running_loop():
        future = asyncio.ensure_future(sync_to_async(loader, thread_sensitive=False)(*args))
        _in_flight[name] = future
        future.add_done_callback(lambda _: _in_flight.pop(name, None))
    return await asyncio.shield(future)


async def _fill(cache_key: str, value: bytes, seconds: int) -> None:
    """SET NX: never replaces a revocation tombstone written meanwhile. A failure only costs a miss."""
    if redis_down():
        return
    try:
        await get_async_redis().set(cache_key, value, ex=seconds, nx=True)
    except RedisError:
        trip_breaker()


async def authenticate_token(token: str):
    """The user (or service principal) of an access token, or None."""
    if authenticate_access_token is None:
        return None
    result = await sync_to_async(authenticate_access_token, thread_sensitive=False)(token)
    if isinstance(result, tuple):
        result = result[0]
    return result


# --- invalidation (called from services and signals, in sync code) ------------------------

def forget_key(hashed: str, *, revoked: bool) -> None:
    """Drop a key's cache entry; a revoked key's entry becomes a tombstone no fill can replace."""
    client = get_redis()
    if revoked:
        client.set(key_cache_key(hashed), TOMBSTONE, ex=KEY_CACHE_SECONDS * 4)
    else:
        client.delete(key_cache_key(hashed))


def forget_tenant(tenant_id: str) -> None:
    get_redis().delete(tenant_cache_key(tenant_id))
