"""Audit writes: append events to a tenant's chain, sign checkpoints, purge by retention."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max, Min

from .chain import body_hash, canonical, link_hash, normalise_json
from .models import GENESIS_HASH, PLATFORM_CHAIN, ActorType, AuditEvent, ChainHead, Checkpoint, CheckpointKind, Result

logger = logging.getLogger(__name__)

EVENT_TABLE = AuditEvent._meta.db_table


@dataclass(frozen=True)
class Actor:
    """Who did it, when it is not a User or API-key object: kind is user, api_key or system."""

    kind: str
    id: str = ""
    label: str = ""
    user_id: int | None = None


SYSTEM = Actor(ActorType.SYSTEM, "", "system")


def _actor_fields(actor) -> tuple[str, str, str, int | None]:
    if actor is None:
        return ActorType.SYSTEM, "", "system", None
    if isinstance(actor, Actor):
        if actor.kind not in _ACTOR_TYPES:
            raise ValueError(f"unknown actor kind {actor.kind!r}")
        user_id = actor.user_id
        if user_id is None and actor.kind == ActorType.USER and str(actor.id).isdigit():
            user_id = int(actor.id)
        return actor.kind, str(actor.id or ""), actor.label or "", user_id
    if hasattr(actor, "prefix"):  # an API key: name it by its public prefix, never its secret
        user_id = getattr(actor, "user_id", None)
        return ActorType.API_KEY, str(actor.pk), str(actor.prefix), int(user_id) if user_id is not None else None
    if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) is not None:
        label = getattr(actor, "email", "") or str(actor)
        return ActorType.USER, str(actor.pk), label, int(actor.pk)
    return ActorType.ANONYMOUS, "", "", None


# Django's `.values` builds its list anew on every access; events are checked against these sets.
_ACTOR_TYPES = frozenset(ActorType.values)
_RESULTS = frozenset(Result.values)


def _clean_ip(value) -> str:
    if not value:
        return ""
    return _canonical_ip(str(value).strip())


@functools.lru_cache(maxsize=4096)  # the same few client addresses over and over
def _canonical_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): random enough to be unguessable, time-ordered so each insert lands at
    the right edge of the primary-key index instead of a random page of a huge one."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62 | rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def _text(value, limit: int) -> str:
    """A column value: a string without NUL (Postgres text cannot hold it), cut to the column size."""
    return str(value or "").replace("\x00", "")[:limit]


def _tenant_key(tenant_id) -> str | None:
    if tenant_id is None or tenant_id == "":
        return None
    return str(getattr(tenant_id, "pk", tenant_id))


def encrypt_details(*, tenant_id: str | None, event_id: str, details: dict) -> str:
    """The details dict as a ciphertext token bound to this event's row (apps.keys)."""
    from apps.keys import services as key_services

    return key_services.encrypt(
        tenant_id=tenant_id, plaintext=canonical(normalise_json(details)), table=EVENT_TABLE, row=event_id, field="details"
    )


def build_event(
    *,
    action: str,
    tenant_id: str | None,
    actor=None,
    resource_type: str = "",
    resource_id: str = "",
    result: str = Result.SUCCESS,
    request=None,
    ip: str | None = None,
    user_agent: str = "",
    metadata: dict | None = None,
    details: dict | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    request_id: str = "",
) -> dict:
    """The columns of a new event with its body hash: all the work that needs no chain lock."""
    if not action or len(action) > 100:
        raise ValueError("action must be 1 to 100 characters")
    if result not in _RESULTS:
        raise ValueError(f"result must be one of {', '.join(Result.values)}, got {result!r}")
    tenant = _tenant_key(tenant_id)
    actor_type, actor_id, actor_label, user_id = _actor_fields(actor)
    if request is not None:
        from apps.core.middleware import client_ip

        ip = ip or client_ip(request)
        user_agent = user_agent or request.headers.get("User-Agent", "")
        request_id = request_id or getattr(request, "request_id", "") or ""
        if actor is None and getattr(getattr(request, "user", None), "is_authenticated", False):
            actor_type, actor_id, actor_label, user_id = _actor_fields(request.user)
    event_id = event_id or new_event_id()
    row = {
        "id": event_id,
        "tenant_id": tenant,
        "occurred_at": (occurred_at or datetime.now(UTC)).astimezone(UTC),
        "actor_type": actor_type,
        "actor_id": _text(actor_id, 64),
        "actor_label": _text(actor_label, 254),
        "user_id": user_id,
        "action": action,
        "resource_type": _text(resource_type, 100),
        "resource_id": _text(resource_id, 200),
        "result": result,
        "ip": _clean_ip(ip),
        "user_agent": _text(user_agent, 500),
        "request_id": _text(request_id, 128),
        "metadata": normalise_json(metadata),
        "details": encrypt_details(tenant_id=tenant, event_id=str(event_id), details=details) if details else None,
    }
    row["body_hash"] = body_hash(row)
    return row


_COLUMNS = (
    "id", "tenant_id", "occurred_at", "actor_type", "actor_id", "actor_label", "user_id", "action",
    "resource_type", "resource_id", "result", "ip", "user_agent", "request_id", "metadata", "details",
)

# One statement, one round trip: advance the head (its row lock serialises the chain until the
# caller commits) and insert the event with the link hash Postgres computes from the old head.
# Built only from this module's constants; every value is a parameter.
_APPEND_SQL = f"""
WITH head AS (
    UPDATE audit_chain_head
       SET last_seq = last_seq + 1,
           prev_hash = last_hash,
           last_hash = encode(sha256(convert_to(last_hash || '|' || (last_seq + 1)::text || '|' || %s, 'UTF8')), 'hex'),
           updated_at = now()
     WHERE chain = %s
 RETURNING last_seq, prev_hash, last_hash
)
INSERT INTO {EVENT_TABLE} ({", ".join(_COLUMNS)}, seq, prev_hash, hash)
SELECT {", ".join("%s::jsonb" if c == "metadata" else "%s" for c in _COLUMNS)}, head.last_seq, head.prev_hash, head.last_hash
  FROM head
RETURNING seq, prev_hash, hash
"""  # noqa: S608

_ENSURE_HEAD_SQL = (
    "INSERT INTO audit_chain_head (chain, last_seq, last_hash, prev_hash, updated_at) "
    "VALUES (%s, 0, %s, %s, now()) ON CONFLICT (chain) DO NOTHING"
)


def _params(row: dict) -> list:
    return [canonical(row[c]) if c == "metadata" else row[c] for c in _COLUMNS]


def _as_event(row: dict, seq: int, prev_hash: str, hash_: str) -> AuditEvent:
    fields = {c: row[c] for c in _COLUMNS}
    event = AuditEvent(**fields, seq=seq, prev_hash=prev_hash, hash=hash_)
    event._state.adding = False
    return event


def record_event(
    *,
    action: str,
    tenant_id: str | None,
    actor=None,
    resource_type: str = "",
    resource_id: str = "",
    result: str = Result.SUCCESS,
    request=None,
    ip: str | None = None,
    user_agent: str = "",
    metadata: dict | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to its tenant's chain (tenant_id None: the platform chain), inside the
    caller's transaction so it commits or rolls back with the change it records. `metadata`
    is stored in clear; `details` is encrypted with the tenant's data key."""
    row = build_event(
        action=action, tenant_id=tenant_id, actor=actor, resource_type=resource_type, resource_id=resource_id,
        result=result, request=request, ip=ip, user_agent=user_agent, metadata=metadata, details=details,
    )
    chain = row["tenant_id"] or PLATFORM_CHAIN
    params = [row["body_hash"], chain, *_params(row)]
    with connection.cursor() as cursor:
        cursor.execute(_APPEND_SQL, params)
        returned = cursor.fetchone()
        if returned is None:  # the chain's first event: create its head, then append
            cursor.execute(_ENSURE_HEAD_SQL, [chain, GENESIS_HASH, GENESIS_HASH])
            cursor.execute(_APPEND_SQL, params)
            returned = cursor.fetchone()
    return _as_event(row, *returned)


# Events go in as one array per column through unnest(), so the statement is the same short text
# whatever the batch size (a VALUES list of thousands of placeholders is slow to build and parse).
_COLUMN_TYPES = {
    "id": "uuid", "tenant_id": "varchar", "occurred_at": "timestamptz", "actor_type": "varchar",
    "actor_id": "varchar", "actor_label": "varchar", "user_id": "bigint", "action": "varchar",
    "resource_type": "varchar", "resource_id": "varchar", "result": "varchar", "ip": "varchar",
    "user_agent": "varchar", "request_id": "varchar", "metadata": "jsonb", "details": "text",
    "seq": "bigint", "prev_hash": "varchar", "hash": "varchar",
}
_BULK_COLUMNS = (*_COLUMNS, "seq", "prev_hash", "hash")
_BULK_INSERT_SQL = (
    f"INSERT INTO {EVENT_TABLE} ({', '.join(_BULK_COLUMNS)}) SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"%s::text[]::{_COLUMN_TYPES[c]}[]" for c in _BULK_COLUMNS)
    + ")"
)


def record_events_bulk(events: list[dict]) -> int:
    """Append many events (record_event's arguments without request, plus optional `occurred_at`
    and `request_id` for events written after the fact) in one short transaction of
    four statements whatever the number of chains: create missing heads, lock every head touched
    (in chain order, so concurrent batches never deadlock), insert the events, move the heads."""
    if not events:
        return 0
    rows = [build_event(**event) for event in events]
    by_chain: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_chain[row["tenant_id"] or PLATFORM_CHAIN].append(row)
    chains = sorted(by_chain)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_chain_head (chain, last_seq, last_hash, prev_hash, updated_at) "
            "SELECT chain, 0, %s, %s, now() FROM unnest(%s::varchar[]) AS chain ON CONFLICT (chain) DO NOTHING",
            [GENESIS_HASH, GENESIS_HASH, chains],
        )
        cursor.execute(
            "SELECT chain, last_seq, last_hash FROM audit_chain_head WHERE chain = ANY(%s::varchar[]) ORDER BY chain FOR UPDATE",
            [chains],
        )
        heads = {chain: (seq, last_hash) for chain, seq, last_hash in cursor.fetchall()}
        values: list[list] = []
        moved: list[tuple] = []
        for chain in chains:
            seq, prev = heads[chain]
            last_prev = prev
            for row in by_chain[chain]:
                seq += 1
                digest = link_hash(prev, seq, row["body_hash"])
                values.append([*_params(row), seq, prev, digest])
                last_prev, prev = prev, digest
            moved.append((chain, seq, prev, last_prev))
        columns = [[None if v is None else str(v) for v in column] for column in zip(*values, strict=True)]
        cursor.execute(_BULK_INSERT_SQL, columns)
        cursor.execute(
            "UPDATE audit_chain_head AS h SET last_seq = m.seq, last_hash = m.last_hash, prev_hash = m.prev_hash, updated_at = now() "
            "FROM unnest(%s::varchar[], %s::bigint[], %s::varchar[], %s::varchar[]) AS m(chain, seq, last_hash, prev_hash) "
            "WHERE h.chain = m.chain",
            [list(col) for col in zip(*moved, strict=True)],
        )
    return len(rows)


# --- Checkpoints -----------------------------------------------------------------------------


def checkpoint_payload(*, tenant_id, kind, seq, head_hash, created_at, previous_digest, key_id) -> bytes:
    """The bytes a checkpoint signature covers."""
    from .chain import format_time

    return canonical({
        "chain": tenant_id or PLATFORM_CHAIN, "kind": kind, "seq": seq, "head_hash": head_hash,
        "created_at": format_time(created_at), "previous": previous_digest, "key_id": key_id,
    }).encode()


def checkpoint_digest(checkpoint: Checkpoint) -> str:
    """What the next checkpoint names: a hash of this one's payload and signature."""
    import hashlib

    payload = checkpoint_payload(
        tenant_id=checkpoint.tenant_id, kind=checkpoint.kind, seq=checkpoint.seq, head_hash=checkpoint.head_hash,
        created_at=checkpoint.created_at, previous_digest=checkpoint.previous_digest, key_id=checkpoint.key_id,
    )
    return hashlib.sha256(payload + b"|" + checkpoint.signature.encode()).hexdigest()


def _sign_checkpoint(*, tenant_id, kind, seq, head_hash) -> Checkpoint:
    from . import signing

    previous = Checkpoint.objects.filter(tenant_id=tenant_id).order_by("-id").select_for_update().first()
    previous_digest = checkpoint_digest(previous) if previous else GENESIS_HASH
    created_at = datetime.now(UTC)
    key_id = signing.current_key_id()
    payload = checkpoint_payload(
        tenant_id=tenant_id, kind=kind, seq=seq, head_hash=head_hash, created_at=created_at,
        previous_digest=previous_digest, key_id=key_id,
    )
    return Checkpoint.objects.create(
        tenant_id=tenant_id, kind=kind, seq=seq, head_hash=head_hash, created_at=created_at, previous=previous,
        previous_digest=previous_digest, key_id=key_id, signature=signing.sign(payload),
    )


def checkpoint_chain(*, chain: str) -> Checkpoint | None:
    """Sign the chain's current head, unless the last checkpoint already covers it."""
    tenant_id = chain or None
    with transaction.atomic():
        head = ChainHead.objects.filter(chain=chain).first()
        if head is None or head.last_seq == 0:
            return None
        last = Checkpoint.objects.filter(tenant_id=tenant_id).order_by("-id").first()
        if last is not None and last.seq == head.last_seq and last.head_hash == head.last_hash:
            return None
        return _sign_checkpoint(tenant_id=tenant_id, kind=CheckpointKind.SCHEDULED, seq=head.last_seq, head_hash=head.last_hash)


def checkpoint_all_chains() -> int:
    created = 0
    for chain in ChainHead.objects.values_list("chain", flat=True):
        if checkpoint_chain(chain=chain) is not None:
            created += 1
    return created


# --- Retention -------------------------------------------------------------------------------


def purge_expired_events(*, tenant_id: str | None, retention_days: int, now: datetime | None = None, actor=None) -> int:
    """Delete the tenant's events older than its retention. A signed anchor at the cut keeps the
    rest verifiable; events a sink has not yet received are kept; the purge is itself audited."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    from .sinks import undelivered_floor

    with transaction.atomic():
        # The cut is the last event before the first one still within retention, so an event
        # written late with an earlier time never takes a younger one with it.
        events = AuditEvent.objects.filter(tenant_id=tenant_id)
        first_young = events.filter(occurred_at__gte=cutoff).aggregate(seq=Min("seq"))["seq"]
        if first_young is None:
            cut = events.filter(occurred_at__lt=cutoff).aggregate(seq=Max("seq"))["seq"]
        else:
            cut = first_young - 1
        if not cut:
            return 0
        floor = undelivered_floor(tenant_id or PLATFORM_CHAIN)
        if floor is not None:
            cut = min(cut, floor)
        anchor_event = AuditEvent.objects.filter(tenant_id=tenant_id, seq=cut).values("seq", "hash").first()
        if anchor_event is None:
            return 0
        first_seq = AuditEvent.objects.filter(tenant_id=tenant_id).order_by("seq").values_list("seq", flat=True).first()
        if first_seq is None or first_seq > cut:
            return 0
        anchor = _sign_checkpoint(tenant_id=tenant_id, kind=CheckpointKind.ANCHOR, seq=cut, head_hash=anchor_event["hash"])
        deleted, _ = AuditEvent.objects.filter(tenant_id=tenant_id, seq__lte=cut).delete()
        record_event(
            action="audit.retention_purge", tenant_id=tenant_id, actor=actor, resource_type="audit_chain",
            resource_id=tenant_id or "platform",
            metadata={
                "deleted": deleted, "through_seq": cut, "retention_days": retention_days,
                "cutoff": cutoff.isoformat(), "anchor_checkpoint": anchor.pk,
            },
        )
    logger.info("audit events purged", extra={"tenant_id": tenant_id, "deleted": deleted, "through_seq": cut})
    return deleted


def purge_all_tenants(*, now: datetime | None = None) -> dict[str, int]:
    """Apply each tenant's retention_days (read through the app registry: audit sits below tenants);
    the platform chain and the chains of deleted tenants keep their own configured periods."""
    from django.apps import apps
    from django.conf import settings

    tenant_model = apps.get_model("tenants", "Tenant")
    periods: dict[str | None, int] = dict(tenant_model.objects.values_list("pk", "retention_days"))
    periods[None] = settings.SWITCHYARD_AUDIT_PLATFORM_RETENTION_DAYS
    for chain in ChainHead.objects.exclude(chain=PLATFORM_CHAIN).values_list("chain", flat=True):
        periods.setdefault(chain, settings.SWITCHYARD_AUDIT_DELETED_TENANT_RETENTION_DAYS)
    results: dict[str, int] = {}
    for tenant_id, days in periods.items():
        deleted = purge_expired_events(tenant_id=tenant_id, retention_days=days, now=now)
        if deleted:
            results[tenant_id or "platform"] = deleted
    return results
