"""Redis clients (sync and asyncio) shared by the whole process, and the key prefix."""

from __future__ import annotations

import threading

import redis
import redis.asyncio as aioredis
from django.conf import settings

_lock = threading.Lock()
_sync_client: redis.Redis | None = None
_async_clients: dict[int, aioredis.Redis] = {}


def driver_info():
    """The client name and version sent with CLIENT SETINFO, resolved once: left to redis-py, every new
    connection reads the package metadata from disk (~0.3 ms), which a burst of arrivals pays per connection."""
    global _driver_info
    if _driver_info is None:
        from redis.driver_info import DriverInfo

        _driver_info = DriverInfo()
    return _driver_info


_driver_info = None


def key(*parts) -> str:
    """A namespaced key: every key Switchyard writes goes through here."""
    return settings.REDIS_KEY_PREFIX + ":".join(str(p) for p in parts)


def get_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30
                )
    return _sync_client


def get_async_redis() -> aioredis.Redis:
    """One asyncio client per running event loop (a client cannot cross loops)."""
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        # A blocking pool makes a burst of commands wait for a free connection instead of
        # failing once the pool is full (1,000 requests in flight share it).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, max_connections=128, timeout=5,
            driver_info=driver_info(),
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop_id] = client
    return client


def reset_clients() -> None:
    """Forget cached clients (tests that point REDIS_URL elsewhere call this)."""
    global _sync_client
    with _lock:
        _sync_client = None
        _async_clients.clear()
