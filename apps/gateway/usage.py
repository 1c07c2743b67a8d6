"""Durable usage and audit recording that stays off the hot path.

A request pushes its record (one RPUSH, ~0.1 ms) onto a Redis list. A drainer, holding a Redis
lock so only one runs at a time across processes, reads a batch from the head of the list,
inserts the usage rows (ON CONFLICT DO NOTHING, so a batch read twice counts once) and, in the
same transaction, appends the audit events of exactly the rows that were new, then trims the
batch off the list. A process that dies mid-batch leaves the batch on the list for the next
drainer. Every server process runs a drainer task on its event loop; a Celery beat task drains
too, so records written just before a shutdown are stored even if no server comes back. When
Redis cannot take a record the request writes it to Postgres itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from apps.core.redis import get_async_redis, get_redis, key

from . import partitions
from .quotas import hot_path_batch

logger = logging.getLogger(__name__)

COLUMNS = [
    "request_id", "created_at", "tenant_id", "api_key_id", "user_id", "department_id", "project_id", "model",
    "deployment_id", "region_id", "endpoint", "stream", "status", "status_code", "error_code", "prompt_tokens",
    "completion_tokens", "cost", "currency", "unpriced", "latency_ms", "ttft_ms", "attempts", "tags",
]
# Fields a queued record carries for its audit event only (never stored in the usage row).
AUDIT_FIELDS = ["ip", "user_agent", "key_prefix", "actor_kind"]

_TRIM_IF_OWNER = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
  return 1
end
return 0
"""


def queue_key() -> str:
    return key("gw", "usage", "queue")


def lock_key() -> str:
    return key("gw", "usage", "drain-lock")


def batch_size() -> int:
    return getattr(settings, "SWITCHYARD_USAGE_BATCH", 500)


def encode(record: dict) -> bytes:
    return orjson.dumps(record, default=_default)


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


# --- the hot path ---------------------------------------------------------------------------

async def enqueue(record: dict) -> None:
    """Queue one record; if Redis cannot take it, store it in Postgres before returning."""
    from .context import redis_down, trip_breaker

    payload = encode(record)
    try:
        if redis_down():
            raise ConnectionError("redis marked down")
        # Through the shared batch: records of concurrent requests (and each request's quota
        # settle) go to Redis in one pipeline; the request still waits until its record is there,
        # so a process that dies after answering loses nothing.
        await hot_path_batch().call("RPUSH", queue_key(), payload)
    except Exception as exc:  # Redis down: the record must not be lost
        trip_breaker()
        logger.warning("usage queue unavailable, writing directly", extra={"error": exc.__class__.__name__})
        await sync_to_async(write_records, thread_sensitive=False)([orjson.loads(payload)])
        return
    ensure_writer()


# --- writing --------------------------------------------------------------------------------

def _row(record: dict) -> list:
    row = []
    for column in COLUMNS:
        value = record.get(column)
        if column == "created_at":
            value = datetime.fromisoformat(value) if isinstance(value, str) else value
        elif column == "tags":
            value = orjson.dumps(value or {}).decode()
        elif column == "cost" and value is not None:
            value = Decimal(str(value))
        elif column in ("region_id", "error_code", "currency", "endpoint") and value is None:
            value = ""
        elif column in ("stream", "unpriced"):
            value = bool(value)
        elif column in ("prompt_tokens", "completion_tokens", "attempts") and value is None:
            value = 0
        row.append(value)
    return row


# Postgres type of each column: rows go in as one array per column through unnest(), so the
# statement has 24 parameters whatever the batch size (psycopg parses a long VALUES list slowly).
COLUMN_TYPES = {
    "request_id": "text", "created_at": "timestamptz", "tenant_id": "text", "api_key_id": "uuid",
    "user_id": "bigint", "department_id": "bigint", "project_id": "bigint", "model": "text", "deployment_id": "uuid",
    "region_id": "text", "endpoint": "text", "stream": "boolean", "status": "text", "status_code": "smallint",
    "error_code": "text", "prompt_tokens": "integer", "completion_tokens": "integer", "cost": "numeric",
    "currency": "text", "unpriced": "boolean", "latency_ms": "double precision", "ttft_ms": "double precision",
    "attempts": "smallint", "tags": "jsonb",
}
# Built from this module's constants only; every value goes as a parameter.
_UNNEST_ARGS = ", ".join(f"%s::text[]::{COLUMN_TYPES[c]}[]" for c in COLUMNS)
_INSERT_SQL = (
    f"INSERT INTO {partitions.TABLE} ({', '.join(COLUMNS)}) SELECT * FROM unnest({_UNNEST_ARGS}) "  # noqa: S608
    "ON CONFLICT (request_id, created_at) DO NOTHING RETURNING request_id"
)


def _insert(rows: list[list]) -> set[str]:
    columns = [[None if value is None else str(value) for value in column] for column in zip(*rows, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, columns)
        return {r[0] for r in cursor.fetchall()}


def _audit_event(record: dict) -> dict:
    from apps.audit.services import Actor

    if record.get("api_key_id"):
        actor = Actor("api_key", str(record["api_key_id"]), record.get("key_prefix") or "")
    elif record.get("user_id"):
        actor = Actor("user", str(record["user_id"]), "")
    else:
        actor = None
    status = record.get("status")
    return {
        "action": "gateway.generate",
        "tenant_id": record["tenant_id"],
        "actor": actor,
        "resource_type": "model",
        "resource_id": record.get("model", ""),
        "result": "success" if status == "success" else ("denied" if status in ("rate_limited", "client_error") else "failure"),
        "ip": record.get("ip"),
        "user_agent": record.get("user_agent") or "",
        "metadata": {
            "request_id": record["request_id"],
            "status_code": record.get("status_code"),
            "endpoint": record.get("endpoint"),
            "deployment_id": record.get("deployment_id"),
            "region": record.get("region_id") or "",
            "prompt_tokens": record.get("prompt_tokens") or 0,
            "completion_tokens": record.get("completion_tokens") or 0,
            "error_code": record.get("error_code") or "",
            "user_id": record.get("user_id"),
        },
    }


def write_records(records: list[dict]) -> int:
    """Insert usage rows and their audit events in one transaction; returns how many were new.
    Safe to call twice with the same records."""
    if not records:
        return 0
    from apps.audit.services import record_events_bulk

    # One record per request id within a batch (the queue can hold a retried push).
    unique = {(r["request_id"], r["created_at"]): r for r in records}
    records = list(unique.values())
    rows = [_row(r) for r in records]
    for attempt in range(2):
        try:
            with transaction.atomic():
                inserted = _insert(rows)
                new = [r for r in records if r["request_id"] in inserted]
                # Quota refusals are audited once per tenant and minute by apps.gateway.violations,
                # so a tenant hammering past its limit cannot flood the audit log (or its writer).
                audited = [r for r in new if r.get("status") != "rate_limited"]
                if audited:
                    record_events_bulk([_audit_event(r) for r in audited])
                _touch_keys(new)
            return len(new)
        except DatabaseError as exc:
            if attempt == 0 and "no partition" in str(exc):
                partitions.ensure_partition_for(row[COLUMNS.index("created_at")] for row in rows)
                continue
            raise
    return 0


def _touch_keys(records: list[dict]) -> None:
    """last_used_at, updated lazily: once per key per batch, only moving forward."""
    latest: dict[str, datetime] = {}
    for record in records:
        key_id = record.get("api_key_id")
        if key_id:
            moment = datetime.fromisoformat(record["created_at"]) if isinstance(record["created_at"], str) else record["created_at"]
            if key_id not in latest or moment > latest[key_id]:
                latest[key_id] = moment
    if not latest:
        return
    with connection.cursor() as cursor:
        for key_id, moment in latest.items():
            cursor.execute(
                "UPDATE gateway_apikey SET last_used_at = %s WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                [moment, key_id, moment],
            )


def drain_once(limit: int | None = None) -> int:
    """Move one batch from the Redis queue into Postgres. Returns the number of queued records
    handled (0 when the queue is empty or another drainer holds the lock)."""
    client = get_redis()
    token = secrets.token_hex(8)
    # A batch takes well under a second; a drainer that died holding the lock blocks others this long.
    if not client.set(lock_key(), token, nx=True, ex=15):
        return 0
    try:
        raw = client.lrange(queue_key(), 0, (limit or batch_size()) - 1)
        if not raw:
            return 0
        records = []
        for item in raw:
            try:
                records.append(orjson.loads(item))
            except orjson.JSONDecodeError:
                logger.error("dropping an unreadable usage record from the queue")
        write_records(records)
        client.eval(_TRIM_IF_OWNER, 2, queue_key(), lock_key(), token, len(raw))
        return len(raw)
    finally:
        client.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, lock_key(), token)


def drain_all(max_batches: int = 1000) -> int:
    total = 0
    for _ in range(max_batches):
        handled = drain_once()
        if not handled:
            break
        total += handled
    return total


def queue_length() -> int:
    return get_redis().llen(queue_key())


# --- the in-process drainer ------------------------------------------------------------------

_writers: dict[int, asyncio.Task] = {}


def ensure_writer() -> None:
    """Start this event loop's drainer task if it is not running (unless a separate
    `manage.py drain_usage --follow` process does the draining)."""
    if not getattr(settings, "SWITCHYARD_USAGE_DRAIN_IN_SERVER", True):
        return
    loop = asyncio.get_running_loop()
    task = _writers.get(id(loop))
    if task is None or task.done():
        _writers[id(loop)] = loop.create_task(_writer_loop())


async def _writer_loop() -> None:
    interval = getattr(settings, "SWITCHYARD_USAGE_FLUSH_MS", 200) / 1000
    drain = sync_to_async(drain_once, thread_sensitive=False)
    redis = get_async_redis()
    idle_since = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            if not await redis.llen(queue_key()):
                if time.monotonic() - idle_since > 300:
                    return  # restarted by the next enqueue
                continue
            idle_since = time.monotonic()
            while await drain() >= batch_size():
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            # The batch stays on the queue; the next round (or another process) retries it.
            logger.exception("usage drain failed")
            await asyncio.sleep(1.0)


def utc_now() -> datetime:
    return datetime.now(UTC)
