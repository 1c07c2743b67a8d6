"""Quota admission: one atomic Redis script per request checks and takes tenant and key quotas.

Windows and what each limit guarantees:

- requests per minute: a sliding window (a log of admissions scored by Redis server time, in ms).
  At most N requests are admitted in ANY 60-second interval, across every process and machine
  that shares the Redis, not just per calendar minute. The log holds at most N entries.
- requests per day: a counter per UTC calendar day.
- tokens per month: a counter per UTC calendar month. Admission reserves `estimated_tokens`
  (the request's max_tokens plus its prompt estimate); `reconcile` then adds actual - estimated.
- max concurrent: a sorted set of leases scored by their expiry. Expired leases are dropped inside
  the script, so a process that dies holding slots frees them when the lease runs out;
  `release` frees a slot at once.

Limits come as QuotaLimits: None means no limit on that dimension, 0 blocks it. Tenant and key
limits are checked and taken together, all or nothing: a refused request consumes nothing.

Keys share the hash tag {tenant_id}, so one tenant's script touches one Redis Cluster slot. A
platform service key acting for several tenants therefore has its per-key counters per tenant.

When Redis cannot be reached `admit` raises QuotaBackendUnavailable (the caller answers 503),
unless the tenant chose the degraded mode (`degraded_ok=True`): then a per-process limiter admits
within the requests-per-minute, requests-per-day and max-concurrent limits divided by
SWITCHYARD_QUOTA_DEGRADED_DIVISOR (the number of server processes, default 2), so the fleet
stays near the configured limits; tokens per month cannot be known without Redis and is not
enforced while degraded. Such admissions are marked `degraded` and counted in a metric.
After a refused connection (or five timeouts in a row) Redis is not tried for
SWITCHYARD_QUOTA_BREAKER_SECONDS (default 1), so an outage costs no connect timeout per request;
a single timeout under load fails only its own request.

Budget hard limits (the budget dimension, pushed down by apps.billing): billing writes one hash per
budget scope with a hard limit (`budget_limit_key`: fields `limit` in cost units of 1e-8 of the
currency, and `period` "day" or "month") and seeds the period's spend counter. The caller passes
its scopes (tenant, department, project) and the request's estimated cost; the script refuses when
spent + estimate would pass the limit, else reserves the estimate; `settle` adds actual - estimate,
exactly like tokens. A scope without a limit hash is not counted. Not enforced while degraded.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.redis import batch_for

logger = logging.getLogger(__name__)

RPM_WINDOW_MS = 60_000
DIMENSIONS = ("requests_per_minute", "requests_per_day", "tokens_per_month", "max_concurrent")
BUDGET = "budget"
# Budget amounts travel as integers of this quantum (the usage record's cost precision).
BUDGET_QUANTUM = Decimal("0.00000001")
_BACKEND_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

# Admission has its own connection pool per event loop, one that waits for a free connection
# instead of failing: with a thousand requests in flight, a full pool must queue the admissions,
# not refuse them (redis-py's default pool raises "Too many connections", which looks like an outage).
_clients: dict[int, tuple] = {}


def _driver_info():
    from apps.core.redis import driver_info

    return driver_info()


def get_async_redis():
    """This event loop's admission client (a new one when REDIS_URL changes, as tests do)."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    found = _clients.get(id(loop))
    if found is not None and found[0]() is loop and found[1] == settings.REDIS_URL:
        return found[2]
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=getattr(settings, "SWITCHYARD_QUOTA_REDIS_POOL", 64),
        timeout=2, socket_connect_timeout=1, socket_timeout=2, driver_info=_driver_info(),
    )
    client = aioredis.Redis(connection_pool=pool)
    _clients[id(loop)] = (weakref.ref(loop), settings.REDIS_URL, client)
    return client



class QuotaBackendUnavailable(Exception):
    """Redis cannot be reached, so quotas cannot be checked; the request must not proceed."""

    def __init__(self, message: str = "Quota service unavailable: Redis cannot be reached; try again shortly."):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_month: int | None = None
    max_concurrent: int | None = None

    def as_args(self) -> list[int]:
        return [-1 if v is None else int(v) for v in (
            self.requests_per_minute, self.requests_per_day, self.tokens_per_month, self.max_concurrent,
        )]


NO_LIMITS = QuotaLimits()


class Admission:
    """The outcome of `admit`. Keep it until the request ends: `release` and `reconcile` need it."""

    __slots__ = (
        "allowed", "reason", "scope", "limit", "retry_after", "headers", "lease_id", "degraded",
        "tenant_id", "key_id", "estimated_tokens", "admitted_at_ms", "_keys", "_released", "_reconciled",
        "_local", "estimated_cost_units", "_cost_reconciled",
    )

    def __init__(self, *, allowed: bool, reason: str = "", scope: str = "", limit: int | None = None,
                 retry_after: int = 0, headers: dict | None = None, lease_id: str = "", degraded: bool = False,
                 tenant_id: str = "", key_id: str | None = None, estimated_tokens: int = 0,
                 admitted_at_ms: int = 0, keys: tuple = (), local=None, estimated_cost_units: int = 0):
        self.allowed = allowed
        self.reason = reason            # which limit refused: one of DIMENSIONS or BUDGET, "" when allowed
        self.scope = scope              # "tenant" or "key" (budget: "tenant", "department" or "project")
        self.limit = limit              # the value of the limit that refused
        self.retry_after = retry_after  # seconds, >= 1 when refused
        self.headers = headers or {}
        self.lease_id = lease_id
        self.degraded = degraded
        self.tenant_id = tenant_id
        self.key_id = key_id
        self.estimated_tokens = estimated_tokens
        self.admitted_at_ms = admitted_at_ms  # Redis server time of the admission
        self._keys = keys
        self._released = False
        self._reconciled = False
        self._local = local
        self.estimated_cost_units = estimated_cost_units
        self._cost_reconciled = False

    def __repr__(self) -> str:
        state = "allowed" if self.allowed else f"refused {self.scope}.{self.reason}"
        return f"<Admission {state} tenant={self.tenant_id} degraded={self.degraded}>"


# KEYS: tenant rpm, rpd, tpm, conc, then the same four for the key.
# ARGV: lease_id, estimated_tokens, lease_ms, day_ttl_s, month_ttl_s, window_ms,
#       tenant limits (rpm, rpd, tpm, conc), key limits (same); -1 = no limit.
#       then (budget dimension) the number of budget scopes and the estimated cost in units; KEYS
#       after the first 8: per budget scope its limit hash, day spend and month spend counters.
# Returns {allowed, fail_scope, fail_dim, retry_ms, fail_limit, now_ms,
#          then per scope: rpm_count, rpm_oldest_ms, rpd_count, tpm_used, conc_count,
#          then (when allowed) per budget scope: 0 not counted, 1 day counter charged, 2 month}.
# A budget refusal has fail_scope 2 + the budget scope's index and fail_dim 5; retry_ms -1 means
# the month's end, -2 the day's.
ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_id = ARGV[1]
local est = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local day_ttl = tonumber(ARGV[4])
local month_ttl = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local counts = {}
local fail = nil
for s = 0, 1 do
  local k = s * 4
  local a = 7 + s * 4
  local rpm_l, rpd_l, tpm_l, conc_l = tonumber(ARGV[a]), tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
  local c = {0, 0, 0, 0, 0}
  if rpm_l >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k+1], '-inf', now - window)
    c[1] = redis.call('ZCARD', KEYS[k+1])
    if c[1] > 0 then c[2] = tonumber(redis.call('ZRANGE', KEYS[k+1], 0, 0, 'WITHSCORES')[2]) end
    if fail == nil and c[1] >= rpm_l then
      local retry = window
      if rpm_l > 0 then
        local entry = redis.call('ZRANGE', KEYS[k+1], c[1] - rpm_l, c[1] - rpm_l, 'WITHSCORES')
        retry = tonumber(entry[2]) + window - now
      end
      fail = {s, 1, retry, rpm_l}
    end
  end
  if rpd_l >= 0 then
    c[3] = tonumber(redis.call('GET', KEYS[k+2]) or '0')
    if fail == nil and c[3] + 1 > rpd_l then fail = {s, 2, -1, rpd_l} end
  end
  if tpm_l >= 0 then
    c[4] = tonumber(redis.call('GET', KEYS[k+3]) or '0')
    if fail == nil and (tpm_l == 0 or c[4] + est > tpm_l) then fail = {s, 3, -1, tpm_l} end
  end
  if conc_l >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k+4], '-inf', now)
    c[5] = redis.call('ZCARD', KEYS[k+4])
    if fail == nil and c[5] >= conc_l then fail = {s, 4, 1000, conc_l} end
  end
  counts[s + 1] = {c, rpm_l, rpd_l, tpm_l, conc_l}
end
local nb = tonumber(ARGV[15] or '0')
local est_cost = tonumber(ARGV[16] or '0')
local charge = {}
for b = 0, nb - 1 do
  local k = 8 + b * 3
  local h = redis.call('HMGET', KEYS[k+1], 'limit', 'period')
  charge[b+1] = 0
  if h[1] then
    local lim = tonumber(h[1])
    local which = 2
    if h[2] == 'day' then which = 1 end
    local spent = tonumber(redis.call('GET', KEYS[k+1+which]) or '0')
    if fail == nil and (spent >= lim or spent + est_cost > lim) then fail = {2 + b, 5, -which, lim} end
    charge[b+1] = which
  end
end
if fail ~= nil then
  local out = {0, fail[1], fail[2], fail[3], fail[4], now}
  for s = 1, 2 do
    local c = counts[s][1]
    table.insert(out, c[1]); table.insert(out, c[2]); table.insert(out, c[3]); table.insert(out, c[4]); table.insert(out, c[5])
  end
  return out
end
local out = {1, -1, 0, 0, 0, now}
for s = 0, 1 do
  local k = s * 4
  local entry = counts[s + 1]
  local c = entry[1]
  if entry[2] >= 0 then
    redis.call('ZADD', KEYS[k+1], now, lease_id)
    redis.call('PEXPIRE', KEYS[k+1], window + 1000)
    if c[1] == 0 then c[2] = now end
    c[1] = c[1] + 1
  end
  if entry[3] >= 0 then
    c[3] = redis.call('INCR', KEYS[k+2])
    redis.call('EXPIRE', KEYS[k+2], day_ttl)
  end
  if entry[4] >= 0 then
    c[4] = redis.call('INCRBY', KEYS[k+3], est)
    redis.call('EXPIRE', KEYS[k+3], month_ttl)
  end
  if entry[5] >= 0 then
    redis.call('ZADD', KEYS[k+4], now + lease_ms, lease_id)
    if redis.call('PTTL', KEYS[k+4]) < lease_ms + 1000 then redis.call('PEXPIRE', KEYS[k+4], lease_ms + 1000) end
    c[5] = c[5] + 1
  end
  table.insert(out, c[1]); table.insert(out, c[2]); table.insert(out, c[3]); table.insert(out, c[4]); table.insert(out, c[5])
end
for b = 0, nb - 1 do
  local which = charge[b+1]
  if which > 0 then
    local k = 8 + b * 3 + 1 + which
    redis.call('INCRBY', KEYS[k], est_cost)
    if which == 1 then redis.call('EXPIRE', KEYS[k], day_ttl) else redis.call('EXPIRE', KEYS[k], month_ttl) end
  end
  table.insert(out, which)
end
return out
"""


ADMIT_SHA = hashlib.sha1(ADMIT_LUA.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


def hot_path_batch():
    """The command batch the data plane's Redis traffic goes through (apps.core.redis.CommandBatch):
    admissions, settles, key and tenant lookups and usage records of concurrent requests share
    pipelines."""
    return batch_for(get_async_redis())


class StaleSnapshot(Exception):
    """A snapshot `admit(verify=...)` was told to expect has changed; the admission was undone."""


async def _admit_script(keys: list[str], args: list, verify: tuple | None = None) -> list:
    """EVALSHA of the admission script through the shared batch, loading the script on NOSCRIPT,
    with the MGET of `verify`'s keys in front of it in the same pipeline.

    If the caller is cancelled while the script is on its way, the script may still run and take
    a slot: wait for its reply and give back what it took before letting the cancellation through."""
    batch = hot_path_batch()
    commands = [("EVALSHA", ADMIT_SHA, len(keys), *keys, *args)]
    if verify is not None:
        commands.insert(0, ("MGET", *verify[0]))
    reply = batch.submit(commands)
    try:
        replies = await asyncio.shield(reply)
        if isinstance(replies[-1], NoScriptError):
            await batch.client.script_load(ADMIT_LUA)
            reply = batch.submit(commands)
            replies = await asyncio.shield(reply)
    except asyncio.CancelledError:
        try:
            result = (await reply)[-1]
        except Exception:  # noqa: BLE001 - Redis failed: nothing was taken, or the lease expires
            raise asyncio.CancelledError from None
        if _took(result):
            with contextlib.suppress(Exception):
                await batch.run(_undo_commands(keys, args, result))
        raise
    result = replies[-1]
    if isinstance(result, Exception):
        raise result
    if verify is not None and (isinstance(replies[0], Exception) or list(replies[0]) != list(verify[1])):
        if _took(result):
            await batch.run(_undo_commands(keys, args, result))
        raise StaleSnapshot()
    return result


def _took(result) -> bool:
    return isinstance(result, list) and bool(result) and int(result[0]) == 1


def _undo_commands(keys: list[str], args: list, result: list) -> list[tuple]:
    """Commands that give back everything an admission took (see ADMIT_LUA for the layouts)."""
    lease_id, estimated = args[0], int(args[1])
    commands: list[tuple] = []
    for scope in (0, 1):
        rpm, rpd, tpm, conc = (int(v) for v in args[6 + scope * 4:10 + scope * 4])
        rpm_key, rpd_key, tpm_key, conc_key = keys[scope * 4:scope * 4 + 4]
        if rpm >= 0:
            commands.append(("ZREM", rpm_key, lease_id))
        if rpd >= 0:
            commands.append(("DECR", rpd_key))
        if tpm >= 0 and estimated:
            commands.append(("DECRBY", tpm_key, estimated))
        if conc >= 0:
            commands.append(("ZREM", conc_key, lease_id))
    budgets, cost = int(args[14]), int(args[15])
    for index, which in enumerate(result[16:16 + budgets]):
        if int(which) > 0 and cost:
            commands.append(("DECRBY", keys[8 + index * 3 + int(which)], cost))
    return commands


def _calendar(now: float) -> tuple[str, str, int, int, int, int]:
    """(day tag, month tag, seconds to next UTC day, to next UTC month, day key ttl, month key ttl)."""
    tm = time.gmtime(now)
    day_tag = f"{tm.tm_year:04d}{tm.tm_mon:02d}{tm.tm_mday:02d}"
    month_tag = f"{tm.tm_year:04d}{tm.tm_mon:02d}"
    next_day = (int(now) // 86400 + 1) * 86400
    year, month = (tm.tm_year + 1, 1) if tm.tm_mon == 12 else (tm.tm_year, tm.tm_mon + 1)
    next_month = calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))
    to_day = max(1, math.ceil(next_day - now))
    to_month = max(1, math.ceil(next_month - now))
    return day_tag, month_tag, to_day, to_month, to_day + 86400, to_month + 86400


def _redis_keys(tenant_id: str, key_id: str | None, day_tag: str, month_tag: str) -> list[str]:
    base = f"{settings.REDIS_KEY_PREFIX}q:{{{tenant_id}}}:"
    tenant = [base + "rpm", base + "rpd:" + day_tag, base + "tpm:" + month_tag, base + "conc"]
    owner = f"{base}k:{key_id or '-'}:"
    key = [owner + "rpm", owner + "rpd:" + day_tag, owner + "tpm:" + month_tag, owner + "conc"]
    return tenant + key


def budget_limit_key(tenant_id: str, kind: str, scope_id) -> str:
    """The hash billing writes for a budget hard limit: fields `limit` (units) and `period`."""
    return f"{settings.REDIS_KEY_PREFIX}q:{{{tenant_id}}}:b:{kind}:{scope_id}"


def budget_spend_key(tenant_id: str, kind: str, scope_id, period: str, now: float | None = None) -> str:
    """The spend counter of a budget scope for the current day or month ("day" / "month")."""
    day_tag, month_tag, *_ = _calendar(time.time() if now is None else now)
    return f"{budget_limit_key(tenant_id, kind, scope_id)}:s:{day_tag if period == 'day' else month_tag}"


def to_budget_units(amount) -> int:
    """A Decimal amount as whole units of BUDGET_QUANTUM, rounded up (a reservation never falls short)."""
    if amount is None:
        return 0
    return max(0, int((Decimal(amount) / BUDGET_QUANTUM).to_integral_value(rounding=ROUND_CEILING)))


def _budget_redis_keys(tenant_id: str, scopes, day_tag: str, month_tag: str) -> list[str]:
    keys = []
    for kind, scope_id in scopes:
        base = budget_limit_key(tenant_id, kind, scope_id)
        keys += [base, f"{base}:s:{day_tag}", f"{base}:s:{month_tag}"]
    return keys


def _headers(rows: list[tuple], now_ms: int, to_day: int, to_month: int, window_ms: int) -> dict[str, str]:
    """X-RateLimit-* for the tightest limit in force. rows: (limits, counts) per scope."""
    headers: dict[str, str] = {}
    best_req = None  # (remaining, limit, reset seconds)
    best_tok = None
    for limits, c in rows:
        rpm_l, rpd_l, tpm_l, _ = limits
        if rpm_l >= 0:
            reset = max(1, math.ceil((c[1] + window_ms - now_ms) / 1000)) if c[0] else 0
            cand = (max(0, rpm_l - c[0]), rpm_l, reset)
            best_req = cand if best_req is None or cand[0] < best_req[0] else best_req
        elif rpd_l >= 0:
            cand = (max(0, rpd_l - c[2]), rpd_l, to_day)
            best_req = cand if best_req is None or cand[0] < best_req[0] else best_req
        if tpm_l >= 0:
            cand = (max(0, tpm_l - c[3]), tpm_l, to_month)
            best_tok = cand if best_tok is None or cand[0] < best_tok[0] else best_tok
    if best_req is not None:
        headers["X-RateLimit-Limit-Requests"] = str(best_req[1])
        headers["X-RateLimit-Remaining-Requests"] = str(best_req[0])
        headers["X-RateLimit-Reset-Requests"] = f"{best_req[2]}s"
    if best_tok is not None:
        headers["X-RateLimit-Limit-Tokens"] = str(best_tok[1])
        headers["X-RateLimit-Remaining-Tokens"] = str(best_tok[0])
        headers["X-RateLimit-Reset-Tokens"] = f"{best_tok[2]}s"
    return headers


# --- Redis outage: a short circuit breaker and the per-process degraded limiter -----------------

_breaker = {"open_until": 0.0, "timeouts": 0}
# A refused or reset connection means Redis is down: the breaker opens at once. A timeout may
# only mean a busy machine, so it fails that one call and opens the breaker only when several
# come in a row (a blackholed Redis), never on one slow moment under load.
TIMEOUTS_TO_TRIP = 5


def _backend_down() -> bool:
    return time.monotonic() < _breaker["open_until"]


def _trip_breaker(exc: BaseException) -> None:
    # A full pool ("No connection available" after waiting) is overload, counted like a timeout.
    if isinstance(exc, (RedisTimeoutError, asyncio.TimeoutError, TimeoutError)) or isinstance(
        exc.__cause__, asyncio.TimeoutError
    ):
        _breaker["timeouts"] += 1
        if _breaker["timeouts"] < TIMEOUTS_TO_TRIP:
            logger.warning("quota backend timed out", extra={"error": exc.__class__.__name__})
            return
    _breaker["timeouts"] = 0
    seconds = getattr(settings, "SWITCHYARD_QUOTA_BREAKER_SECONDS", 1.0)
    _breaker["open_until"] = time.monotonic() + seconds
    # An error line for log-based alerting; the switchyard_gateway_quota_backend_unavailable_total
    # counter is the metric to alert on.
    logger.error("quota backend unreachable: quotas cannot be checked",
                 extra={"error": exc.__class__.__name__, "alert": "quota_backend_unavailable"})


def reset_backend_state() -> None:
    """Forget the breaker and the degraded limiter's state (tests, and after Redis recovers)."""
    _breaker["open_until"] = 0.0
    _breaker["timeouts"] = 0
    _local.reset()


class _LocalLimiter:
    """Per-process stand-in while Redis is down: each process takes 1/divisor of each limit."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reset_state()

    def _reset_state(self):
        self.window: dict[str, deque] = {}
        self.day: dict[str, tuple[str, int]] = {}
        self.leases: dict[str, set[str]] = {}

    def reset(self):
        with self._lock:
            self._reset_state()

    @staticmethod
    def _share(limit: int) -> int:
        divisor = max(1, int(getattr(settings, "SWITCHYARD_QUOTA_DEGRADED_DIVISOR", 2)))
        return 0 if limit == 0 else max(1, limit // divisor)

    def admit(self, scopes: list[tuple[str, str, QuotaLimits]], lease_id: str, day_tag: str, to_day: int):
        now = time.monotonic()
        with self._lock:
            for scope, ident, limits in scopes:
                if limits.requests_per_minute is not None:
                    share = self._share(limits.requests_per_minute)
                    log = self.window.setdefault(ident, deque())
                    while log and log[0] <= now - RPM_WINDOW_MS / 1000:
                        log.popleft()
                    if len(log) >= share:
                        retry = math.ceil(log[0] + RPM_WINDOW_MS / 1000 - now) if log else RPM_WINDOW_MS // 1000
                        return scope, "requests_per_minute", share, max(1, retry)
                if limits.requests_per_day is not None:
                    tag, count = self.day.get(ident, (day_tag, 0))
                    count = count if tag == day_tag else 0
                    if count + 1 > self._share(limits.requests_per_day):
                        return scope, "requests_per_day", self._share(limits.requests_per_day), to_day
                if limits.max_concurrent is not None:
                    share = self._share(limits.max_concurrent)
                    if len(self.leases.get(ident, ())) >= share:
                        return scope, "max_concurrent", share, 1
            for _scope, ident, limits in scopes:
                if limits.requests_per_minute is not None:
                    self.window.setdefault(ident, deque()).append(now)
                if limits.requests_per_day is not None:
                    tag, count = self.day.get(ident, (day_tag, 0))
                    self.day[ident] = (day_tag, (count if tag == day_tag else 0) + 1)
                if limits.max_concurrent is not None:
                    self.leases.setdefault(ident, set()).add(lease_id)
        return None

    def release(self, idents: list[str], lease_id: str):
        with self._lock:
            for ident in idents:
                self.leases.get(ident, set()).discard(lease_id)


_local = _LocalLimiter()


def _count_outage(outcome: str) -> None:
    try:
        from apps.gateway import metrics

        metrics.count_redis_outage(outcome)
    except Exception:  # a metrics failure must never turn an admission into an error
        logger.debug("could not count redis outage", exc_info=True)


def _degraded_admit(*, tenant_id, tenant_limits, key_id, key_limits, estimated_tokens, lease_id) -> Admission:
    day_tag, _month, to_day, _to_month, _dttl, _mttl = _calendar(time.time())
    scopes = [("tenant", f"t:{tenant_id}", tenant_limits)]
    if key_id is not None:
        scopes.append(("key", f"k:{tenant_id}:{key_id}", key_limits or NO_LIMITS))
    refused = _local.admit(scopes, lease_id, day_tag, to_day)
    local = [ident for _, ident, _ in scopes]
    if refused:
        scope, reason, limit, retry = refused
        return Admission(allowed=False, reason=reason, scope=scope, limit=limit, retry_after=retry,
                         headers={}, degraded=True, tenant_id=tenant_id, key_id=key_id,
                         estimated_tokens=estimated_tokens)
    return Admission(allowed=True, lease_id=lease_id, degraded=True, tenant_id=tenant_id, key_id=key_id,
                     estimated_tokens=estimated_tokens, local=local)


# --- The public API ---------------------------------------------------------------------------


async def admit(*, tenant_id: str, tenant_limits: QuotaLimits, key_id=None, key_limits: QuotaLimits | None = None,
                estimated_tokens: int, request_id: str, lease_seconds: int = 300,
                degraded_ok: bool = False, budget_scopes=(), estimated_cost_units: int = 0,
                verify: tuple | None = None) -> Admission:
    """Check and take every quota of the tenant and (when given) the key in one atomic step.

    `budget_scopes`: (kind, id) pairs, e.g. [("tenant", "acme"), ("department", 3), ("project", 9)],
    whose budget hard limits (if billing set any) are checked and charged `estimated_cost_units`.

    `verify`: (cache keys, the values expected in them). The keys are read in the same round trip
    as the admission; if any holds something else, whatever the admission took is given back and
    StaleSnapshot is raised (the caller decided on snapshots that have changed since)."""
    tenant_id = str(tenant_id)
    key_id = None if key_id is None else str(key_id)
    estimated_tokens = max(0, int(estimated_tokens))
    # The lease id is unique per admission (a retried request id must count again, once admitted).
    lease_id = f"{request_id}:{os.urandom(6).hex()}"
    now = time.time()
    day_tag, month_tag, to_day, to_month, day_ttl, month_ttl = _calendar(now)
    budget_scopes = [(str(kind), str(scope_id)) for kind, scope_id in budget_scopes]
    estimated_cost_units = max(0, int(estimated_cost_units))
    keys = _redis_keys(tenant_id, key_id, day_tag, month_tag) + _budget_redis_keys(
        tenant_id, budget_scopes, day_tag, month_tag)
    key_args = (key_limits or NO_LIMITS).as_args() if key_id is not None else [-1, -1, -1, -1]
    tenant_args = tenant_limits.as_args()
    args = [lease_id, estimated_tokens, int(lease_seconds * 1000), day_ttl, month_ttl, RPM_WINDOW_MS,
            *tenant_args, *key_args, len(budget_scopes), estimated_cost_units]

    if _backend_down():
        if verify is not None:
            raise StaleSnapshot()  # nothing can be verified: the caller takes the slow path
        return _unavailable(degraded_ok, tenant_id, tenant_limits, key_id, key_limits, estimated_tokens, lease_id)
    try:
        result = await _admit_script(keys, args, verify)
    except _BACKEND_ERRORS as exc:
        _trip_breaker(exc)
        if verify is not None:
            raise StaleSnapshot() from None
        return _unavailable(degraded_ok, tenant_id, tenant_limits, key_id, key_limits, estimated_tokens, lease_id)

    _breaker["timeouts"] = 0
    allowed, fail_scope, fail_dim, retry_ms, fail_limit, now_ms = (int(v) for v in result[:6])
    tenant_counts = [int(v) for v in result[6:11]]
    key_counts = [int(v) for v in result[11:16]]
    rows = [(tenant_args, tenant_counts)]
    if key_id is not None:
        rows.append((key_args, key_counts))
    headers = _headers(rows, now_ms, to_day, to_month, RPM_WINDOW_MS)
    if allowed:
        # Only the counters this admission took are given back or corrected later.
        conc_keys = tuple(k for k, lim in ((keys[3], tenant_args[3]), (keys[7], key_args[3])) if lim >= 0)
        token_keys = tuple(k for k, lim in ((keys[2], tenant_args[2]), (keys[6], key_args[2])) if lim >= 0)
        charged = [int(v) for v in result[16:16 + len(budget_scopes)]]
        budget_keys = tuple(keys[8 + b * 3 + which] for b, which in enumerate(charged) if which > 0)
        return Admission(allowed=True, headers=headers, lease_id=lease_id, tenant_id=tenant_id, key_id=key_id,
                         estimated_tokens=estimated_tokens, admitted_at_ms=now_ms,
                         keys=(conc_keys, token_keys, budget_keys), estimated_cost_units=estimated_cost_units)

    if fail_dim == 5:
        return Admission(allowed=False, reason=BUDGET, scope=budget_scopes[fail_scope - 2][0], limit=fail_limit,
                         retry_after=to_day if retry_ms == -2 else to_month, headers=headers, tenant_id=tenant_id,
                         key_id=key_id, estimated_tokens=estimated_tokens, admitted_at_ms=now_ms,
                         estimated_cost_units=estimated_cost_units)
    reason = DIMENSIONS[fail_dim - 1]
    if reason == "requests_per_day":
        retry_after = to_day
    elif reason == "tokens_per_month":
        retry_after = to_month
    else:
        retry_after = max(1, math.ceil(retry_ms / 1000))
    if reason in ("requests_per_minute", "requests_per_day"):
        headers["X-RateLimit-Limit-Requests"] = str(fail_limit)
        headers["X-RateLimit-Remaining-Requests"] = "0"
        headers["X-RateLimit-Reset-Requests"] = f"{retry_after}s"
    elif reason == "tokens_per_month":
        headers["X-RateLimit-Limit-Tokens"] = str(fail_limit)
        headers["X-RateLimit-Reset-Tokens"] = f"{retry_after}s"
    return Admission(allowed=False, reason=reason, scope="tenant" if fail_scope == 0 else "key", limit=fail_limit,
                     retry_after=retry_after, headers=headers, tenant_id=tenant_id, key_id=key_id,
                     estimated_tokens=estimated_tokens, admitted_at_ms=now_ms)


def _unavailable(degraded_ok, tenant_id, tenant_limits, key_id, key_limits, estimated_tokens, lease_id):
    _count_outage("degraded" if degraded_ok else "refused")
    if not degraded_ok:
        raise QuotaBackendUnavailable()
    return _degraded_admit(tenant_id=tenant_id, tenant_limits=tenant_limits, key_id=key_id,
                           key_limits=key_limits, estimated_tokens=estimated_tokens, lease_id=lease_id)


async def release(admission: Admission) -> None:
    """Free the concurrency slot. Safe to call twice and on a refused admission; never raises."""
    await settle(admission, None)


async def renew(admission: Admission, lease_seconds: int = 300) -> None:
    """Extend a held concurrency lease (a stream outliving its lease would otherwise lose its slot
    to the lease's expiry). A lease already released or expired is not brought back. Never raises."""
    if not admission.allowed or admission._released or admission._local is not None or _backend_down():
        return
    conc_keys = admission._keys[0]
    if not conc_keys:
        return
    expiry_ms = int((time.time() + lease_seconds) * 1000)

    def fill(pipe):
        for k in conc_keys:
            pipe.zadd(k, {admission.lease_id: expiry_ms}, xx=True)
            pipe.pexpire(k, lease_seconds * 1000 + 1000, gt=True)

    await _run(fill)


async def reconcile(admission: Admission, actual_tokens: int) -> None:
    """Correct the month's token counters by actual - estimated. Once per admission; never raises."""
    if not admission.allowed or admission._reconciled:
        return
    admission._reconciled = True
    delta = max(0, int(actual_tokens)) - admission.estimated_tokens
    if delta == 0 or admission._local is not None or _backend_down():
        return
    await _run(lambda pipe: [pipe.incrby(k, delta) for k in admission._keys[1]])


async def settle(admission: Admission, actual_tokens: int | None, actual_cost_units: int | None = None) -> None:
    """release + reconcile in one Redis round trip: the usual end of a request, on every path.

    `actual_tokens` None leaves the reservation as it is (the real count is unknown); likewise
    `actual_cost_units` for the budget reservation (the request's real, priced cost).
    Never raises: if Redis is gone the lease expires by itself."""
    await settled(start_settle(admission, actual_tokens, actual_cost_units))


def start_settle(admission: Admission, actual_tokens: int | None, actual_cost_units: int | None = None):
    """`settle`'s commands handed to the shared batch now, without waiting: returns what to pass to
    `settled` (None when nothing goes to Redis). Whatever else the caller hands to the batch before
    it next awaits goes in the same pipeline (the request's usage record does)."""
    if not admission.allowed:
        return None
    cost_delta = 0
    if actual_cost_units is not None and not admission._cost_reconciled:
        admission._cost_reconciled = True
        cost_delta = max(0, int(actual_cost_units)) - admission.estimated_cost_units
    release_slot = not admission._released
    admission._released = True
    delta = 0
    if actual_tokens is not None and not admission._reconciled:
        admission._reconciled = True
        delta = max(0, int(actual_tokens)) - admission.estimated_tokens
    if admission._local is not None:
        if release_slot:
            _local.release(admission._local, admission.lease_id)
        return None
    conc_keys, token_keys, budget_keys = admission._keys
    if not ((release_slot and conc_keys) or (delta and token_keys) or (cost_delta and budget_keys)) \
            or _backend_down():
        return None

    commands = []
    if release_slot:
        commands += [("ZREM", k, admission.lease_id) for k in conc_keys]
    if delta:
        commands += [("INCRBY", k, delta) for k in token_keys]
    if cost_delta:
        commands += [("INCRBY", k, cost_delta) for k in budget_keys]
    # Through the shared batch: a burst of finishing requests costs a few round trips.
    return hot_path_batch().submit(commands)


async def settled(pending) -> None:
    """Wait for a `start_settle`; never raises (a Redis failure trips the breaker)."""
    if pending is None:
        return
    try:
        await pending
    except _BACKEND_ERRORS as exc:
        _trip_breaker(exc)


async def _run(fill) -> None:
    try:
        pipe = get_async_redis().pipeline(transaction=False)
        fill(pipe)
        await pipe.execute()
    except _BACKEND_ERRORS as exc:
        _trip_breaker(exc)


def _usage_commands(tenant_id, key_id, pipe) -> None:
    now = time.time()
    day_tag, month_tag, *_ = _calendar(now)
    keys = _redis_keys(str(tenant_id), None if key_id is None else str(key_id), day_tag, month_tag)
    offset = 4 if key_id is not None else 0
    now_ms = int(now * 1000)
    pipe.zcount(keys[offset], now_ms - RPM_WINDOW_MS + 1, "+inf")
    pipe.get(keys[offset + 1])
    pipe.get(keys[offset + 2])
    pipe.zcount(keys[offset + 3], now_ms + 1, "+inf")


def _usage_result(values) -> dict[str, int]:
    rpm, rpd, tpm, conc = values
    return {
        "requests_per_minute": int(rpm), "requests_per_day": int(rpd or 0),
        "tokens_per_month": int(tpm or 0), "max_concurrent": int(conc),
    }


async def usage(*, tenant_id: str, key_id=None) -> dict[str, int]:
    """Current counts: requests in the last 60 s, today, tokens this month, slots in use.
    (A key's counters exist only for the dimensions it has a limit on.)"""
    pipe = get_async_redis().pipeline(transaction=False)
    _usage_commands(tenant_id, key_id, pipe)
    return _usage_result(await pipe.execute())


def usage_sync(*, tenant_id: str, key_id=None) -> dict[str, int]:
    """`usage` for synchronous callers (console pages)."""
    from apps.core.redis import get_redis

    pipe = get_redis().pipeline(transaction=False)
    _usage_commands(tenant_id, key_id, pipe)
    return _usage_result(pipe.execute())
