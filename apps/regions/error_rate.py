"""Passive health by error rate: a deployment failing a large share of live calls cools down even when its
failures never come three in a row (a flaky upstream that fails every other call).

Each gateway process counts its own calls per deployment in a sliding window of
SWITCHYARD_HEALTH_ERROR_RATE_WINDOW_SECONDS, in memory: a success costs no I/O. When at least
SWITCHYARD_HEALTH_ERROR_RATE_MIN_REQUESTS calls in the window include a share of failures of
SWITCHYARD_HEALTH_ERROR_RATE or more, the process starts the shared cool-down in Redis (the same key consecutive
failures use, so every process and the router skip the deployment) and forgets that deployment's window, so the
spike is acted on once. Each process sees a sample of the traffic, which is enough to see a spike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from django.conf import settings
from redis.exceptions import RedisError

from apps.core.redis import get_async_redis

from . import health

logger = logging.getLogger(__name__)

BUCKETS = 10


class _Window:
    __slots__ = ("buckets",)

    def __init__(self):
        # (bucket start, calls, failures), oldest first
        self.buckets: deque[list] = deque()

    def add(self, now: float, width: float, failed: bool) -> tuple[int, int]:
        start = now - now % width
        horizon = now - width * BUCKETS
        while self.buckets and self.buckets[0][0] <= horizon:
            self.buckets.popleft()
        if not self.buckets or self.buckets[-1][0] != start:
            self.buckets.append([start, 0, 0])
        bucket = self.buckets[-1]
        bucket[1] += 1
        bucket[2] += int(failed)
        return sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets)


_windows: dict[str, _Window] = {}
_lock = threading.Lock()


def _note(deployment_id: str, failed: bool, now: float | None = None) -> bool:
    width = settings.SWITCHYARD_HEALTH_ERROR_RATE_WINDOW_SECONDS / BUCKETS
    with _lock:
        window = _windows.get(deployment_id)
        if window is None:
            window = _windows[deployment_id] = _Window()
        calls, failures = window.add(time.monotonic() if now is None else now, width, failed)
        spike = (failed and calls >= settings.SWITCHYARD_HEALTH_ERROR_RATE_MIN_REQUESTS
                 and failures / calls >= settings.SWITCHYARD_HEALTH_ERROR_RATE)
        if spike:
            _windows.pop(deployment_id, None)
    return spike


def note_success(deployment_id: str, now: float | None = None) -> None:
    _note(str(deployment_id), False, now)


def note_failure(deployment_id: str, now: float | None = None) -> bool:
    """Count a failed call; True when it makes the window's error rate a spike (act on it once)."""
    return _note(str(deployment_id), True, now)


async def astart_cooldown(deployment_id: str) -> None:
    try:
        await get_async_redis().set(health._cool_key(deployment_id), "error-rate",
                                    ex=max(1, int(settings.REGIONS_HEALTH_COOLDOWN_SECONDS)))
    except RedisError:
        logger.warning("could not start an error-rate cool-down", extra={"deployment": str(deployment_id)})
        return
    logger.warning("deployment cooling down after an error-rate spike", extra={"deployment": str(deployment_id)})


def reset() -> None:
    with _lock:
        _windows.clear()
