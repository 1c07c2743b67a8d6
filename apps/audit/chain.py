"""The canonical form of an event and the hash chain over it (shared by append and verify)."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime

import orjson
from django.core.serializers.json import DjangoJSONEncoder

# The columns an event's body hash covers, in a fixed order. `seq` and `prev_hash` join in the link.
BODY_FIELDS = (
    "id", "tenant_id", "occurred_at", "actor_type", "actor_id", "actor_label", "user_id", "action",
    "resource_type", "resource_id", "result", "ip", "user_agent", "request_id", "metadata", "details",
)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(value):
    """Floats that JSON and jsonb cannot carry (NaN, infinities) become strings; NUL is dropped."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.replace("\x00", "")  # jsonb cannot hold NUL
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def normalise_json(value: dict | None) -> dict:
    """The value as it will read back from jsonb: plain JSON types only (dates, Decimals and UUIDs
    as strings), so the hash computed now matches the one computed at verification."""
    if not value:
        return {}
    plain = _plain(value)
    try:
        # orjson, with Django's encoder for what JSON has no type for (dates as Django writes them,
        # Decimals, durations): the same result as the standard library's path, several times faster.
        return orjson.loads(orjson.dumps(plain, default=_DJANGO_ENCODER.default, option=orjson.OPT_PASSTHROUGH_DATETIME))
    except TypeError:  # integers beyond 64 bits, which orjson refuses
        return json.loads(json.dumps(plain, cls=DjangoJSONEncoder))


_DJANGO_ENCODER = DjangoJSONEncoder()


def canonical(data) -> str:
    return canonical_bytes(data).decode()


def canonical_bytes(data) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8. Integers beyond 64 bits (which orjson
    refuses) take the standard library's path; the same value always takes the same path."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_hash(event: dict) -> str:
    """SHA-256 over the deterministic JSON of the event's own fields (details as ciphertext)."""
    body = {name: event.get(name) for name in BODY_FIELDS}
    body["id"] = str(body["id"])
    body["occurred_at"] = format_time(body["occurred_at"]) if isinstance(body["occurred_at"], datetime) else body["occurred_at"]
    body["metadata"] = body["metadata"] or {}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def link_hash(prev_hash: str, seq: int, body_digest: str) -> str:
    """The event's chain hash. Postgres computes the same on append (see services._APPEND_SQL)."""
    return hashlib.sha256(f"{prev_hash}|{seq}|{body_digest}".encode()).hexdigest()
