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


class CommandBatch:
    """Group commit of Redis commands from concurrent requests on one event loop.

    Each caller hands over its commands and waits for their replies; the commands of every caller
    that arrives before the next flush (all those of one loop iteration, and all that arrive while
    a flush is in flight) go to Redis as one pipeline: one write and one read for the whole group.
    With 50 requests in flight a process makes a handful of round trips instead of one per
    command, and at one request the commands a request issues together (a slot's release and its
    usage record) still share one. The flush runs in its own task, so a caller that is cancelled
    (a client that disconnects) does not cut a pipeline that carries other callers' commands.

    Replies come back in order, one per command; a command Redis refused comes back as its
    ResponseError (NoScriptError for an unknown script), not raised. A connection failure or a
    timeout is raised to every caller of that pipeline."""

    def __init__(self, client):
        self.client = client
        self.pending: list = []
        self.flushing = False

    async def run(self, commands: list[tuple]) -> list:
        return await self.submit(commands)

    def submit(self, commands: list[tuple]):
        """Hand over the commands now; the returned future gets their replies. What is submitted
        before the caller next awaits goes in the same pipeline."""
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((commands, future))
        if not self.flushing:
            self.flushing = True
            loop.create_task(self._flush())
        return future

    async def call(self, *command):
        """One command; a refusal (ResponseError) is raised."""
        reply = (await self.run([command]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _flush(self) -> None:
        import asyncio

        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for commands, _ in batch:
                        for command in commands:
                            pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except BaseException as exc:  # noqa: BLE001 - handed to every caller of this pipeline
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for commands, future in batch:
                    end = start + len(commands)
                    if not future.done():
                        future.set_result(replies[start:end])
                    start = end
        finally:
            self.flushing = False
            for _, future in self.pending:  # left only when the flush itself was cancelled
                future.cancel()
            self.pending = []


def batch_for(client) -> CommandBatch:
    """The command batch of an asyncio client (clients are per event loop, so batches are too)."""
    batch = getattr(client, "_switchyard_batch", None)
    if batch is None:
        batch = client._switchyard_batch = CommandBatch(client)
    return batch
