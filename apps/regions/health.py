"""Passive deployment health in Redis: consecutive upstream failures put a deployment in a cool-down.

Shared by every gateway process, so one process's bad luck with an upstream spares the others the same
timeouts. After REGIONS_HEALTH_FAILURE_THRESHOLD consecutive failures the deployment cools down for
REGIONS_HEALTH_COOLDOWN_SECONDS (the key expires by itself; no sweeper needed); any success resets the count.
Reads degrade open: if Redis cannot answer, no deployment is considered cooling down.
"""

from __future__ import annotations

import logging

from django.conf import settings
from redis.exceptions import RedisError

from apps.core.redis import get_async_redis, get_redis, key

logger = logging.getLogger(__name__)

# INCR the failure count; at the threshold start the cool-down and reset the count, atomically, so two
# processes failing at once cannot both miss (or double-start) the cool-down. Returns 1 if it started one.
_RECORD_FAILURE = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def _fail_key(deployment_id) -> str:
    return key("health", "fail", str(deployment_id))


def _cool_key(deployment_id) -> str:
    return key("health", "cool", str(deployment_id))


def _failure_args(cooldown_seconds: int | None) -> list:
    cooldown = int(cooldown_seconds or settings.REGIONS_HEALTH_COOLDOWN_SECONDS)
    # A failure streak older than a few cool-downs is stale: forget it.
    return [settings.REGIONS_HEALTH_FAILURE_THRESHOLD, max(1, cooldown), max(60, cooldown * 4)]


def record_failure(deployment_id, *, cooldown_seconds: int | None = None) -> bool:
    """Count a failure; True when this one started a cool-down."""
    client = get_redis()
    return bool(client.eval(_RECORD_FAILURE, 2, _fail_key(deployment_id), _cool_key(deployment_id),
                            *_failure_args(cooldown_seconds)))


def record_success(deployment_id) -> None:
    get_redis().delete(_fail_key(deployment_id))


def is_cooling_down(deployment_id) -> bool:
    try:
        return bool(get_redis().exists(_cool_key(deployment_id)))
    except RedisError:
        logger.warning("health state unreadable; treating deployment as healthy", extra={"deployment": str(deployment_id)})
        return False


def end_cooldown(deployment_id) -> None:
    """Put a deployment back in rotation now (an operator's action, or a successful active probe)."""
    client = get_redis()
    client.delete(_cool_key(deployment_id), _fail_key(deployment_id))


# Ends a cool-down only if the active probes started it, so a good probe never cuts short one that live
# traffic started (the upstream may answer its health endpoint and still fail real calls).
_END_PROBE_COOLDOWN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


def hold_cooldown(deployment_id, *, seconds: int, source: str = "probe") -> None:
    """Keep a deployment out of rotation for `seconds` from now (active health checks renew it while down)."""
    get_redis().set(_cool_key(deployment_id), source, ex=max(1, int(seconds)))


def end_probe_cooldown(deployment_id, *, source: str = "probe") -> bool:
    """End a cool-down that `hold_cooldown(source=...)` started; True when one was ended."""
    return bool(get_redis().eval(_END_PROBE_COOLDOWN, 2, _cool_key(deployment_id), _fail_key(deployment_id), source))


def cooldown_remaining(deployment_id) -> int:
    """Seconds left in the cool-down (0 when none), for the console."""
    try:
        ttl = get_redis().ttl(_cool_key(deployment_id))
    except RedisError:
        return 0
    return max(0, int(ttl)) if ttl and ttl > 0 else 0


async def arecord_failure(deployment_id, *, cooldown_seconds: int | None = None) -> bool:
    try:
        started = await get_async_redis().eval(
            _RECORD_FAILURE, 2, _fail_key(deployment_id), _cool_key(deployment_id), *_failure_args(cooldown_seconds)
        )
    except RedisError:
        logger.warning("could not record an upstream failure", extra={"deployment": str(deployment_id)})
        return False
    if started:
        logger.warning("deployment cooling down after consecutive failures", extra={"deployment": str(deployment_id)})
    return bool(started)


async def arecord_success(deployment_id) -> None:
    try:
        await get_async_redis().delete(_fail_key(deployment_id))
    except RedisError:
        logger.warning("could not record an upstream success", extra={"deployment": str(deployment_id)})


async def ais_cooling_down(deployment_id) -> bool:
    return str(deployment_id) in await ahealth_state([deployment_id])


async def ahealth_state(deployment_ids) -> dict[str, tuple[bool, bool]]:
    """{id: (cooling down, has a failure streak)} for the ids, in one round trip; only ids with either set.

    The router reads this once per request: it skips cooling deployments, and it only spends a Redis write
    on a success when there is a streak to reset."""
    ids = [str(d) for d in deployment_ids]
    if not ids:
        return {}
    names = [_cool_key(d) for d in ids] + [_fail_key(d) for d in ids]
    try:
        values = await get_async_redis().mget(names)
    except RedisError:
        logger.warning("health state unreadable; treating deployments as healthy")
        return {}
    count = len(ids)
    state = {}
    for index, deployment_id in enumerate(ids):
        cooling = values[index] is not None
        streak = values[count + index] is not None
        if cooling or streak:
            state[deployment_id] = (cooling, streak)
    return state
