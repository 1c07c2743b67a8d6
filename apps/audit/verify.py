"""Chain verification: recompute every link and check every signed checkpoint, needing no keys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.db import connection, transaction

from . import signing
from .chain import body_hash, link_hash
from .models import GENESIS_HASH, PLATFORM_CHAIN, ChainHead, Checkpoint, CheckpointKind
from .services import checkpoint_digest, checkpoint_payload

_FETCH = 5000


@dataclass
class ChainReport:
    chain: str
    events: int = 0
    valid_events: int = 0
    checkpoints: int = 0
    valid_checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    errors: list[str] = field(default_factory=list)
    first_bad_event: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def label(self) -> str:
        return self.chain or "platform"

    def fail(self, message: str, *, event_id: str | None = None) -> None:
        if event_id and self.first_bad_event is None:
            self.first_bad_event = event_id
        self.errors.append(message)

    def as_dict(self) -> dict:
        return {
            "chain": self.label, "ok": self.ok, "events": self.events, "valid_events": self.valid_events,
            "checkpoints": self.checkpoints, "valid_checkpoints": self.valid_checkpoints,
            "first_seq": self.first_seq, "last_seq": self.last_seq,
            "first_bad_event": self.first_bad_event, "errors": self.errors[:20],
        }


_EVENT_SQL = """
SELECT id, tenant_id, occurred_at, actor_type, actor_id, actor_label, user_id, action, resource_type,
       resource_id, result, ip, user_agent, request_id, metadata::text, details, seq, prev_hash, hash
  FROM audit_event
 WHERE {where}
 ORDER BY seq
"""
_NAMES = (
    "id", "tenant_id", "occurred_at", "actor_type", "actor_id", "actor_label", "user_id", "action", "resource_type",
    "resource_id", "result", "ip", "user_agent", "request_id", "metadata", "details",
)


def _check_checkpoints(report: ChainReport, tenant_id: str | None) -> tuple[list[Checkpoint], Checkpoint | None]:
    checkpoints = list(Checkpoint.objects.filter(tenant_id=tenant_id).order_by("id"))
    report.checkpoints = len(checkpoints)
    expected_previous = GENESIS_HASH
    previous_seq = 0
    anchor = None
    for checkpoint in checkpoints:
        payload = checkpoint_payload(
            tenant_id=checkpoint.tenant_id, kind=checkpoint.kind, seq=checkpoint.seq, head_hash=checkpoint.head_hash,
            created_at=checkpoint.created_at, previous_digest=checkpoint.previous_digest, key_id=checkpoint.key_id,
        )
        good = True
        if not signing.verify(payload, checkpoint.signature, checkpoint.key_id):
            report.fail(f"checkpoint {checkpoint.pk} (seq {checkpoint.seq}): signature does not verify (forged or altered)")
            good = False
        if checkpoint.previous_digest != expected_previous:
            report.fail(f"checkpoint {checkpoint.pk}: does not name the checkpoint before it (inserted, deleted or reordered)")
            good = False
        # A head only moves forward; a retention anchor may sit below the last head signed.
        if checkpoint.kind != CheckpointKind.ANCHOR and checkpoint.seq < previous_seq:
            report.fail(f"checkpoint {checkpoint.pk}: seq {checkpoint.seq} goes back from {previous_seq}")
            good = False
        if good:
            report.valid_checkpoints += 1
            if checkpoint.kind == CheckpointKind.ANCHOR and (anchor is None or checkpoint.seq > anchor.seq):
                anchor = checkpoint
        expected_previous = checkpoint_digest(checkpoint)
        if checkpoint.kind != CheckpointKind.ANCHOR:
            previous_seq = checkpoint.seq
    return checkpoints, anchor


def verify_chain(chain: str) -> ChainReport:
    """Walk one chain in seq order from its genesis (or its latest retention anchor)."""
    tenant_id = chain or None
    report = ChainReport(chain=chain)
    checkpoints, anchor = _check_checkpoints(report, tenant_id)
    by_seq: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        by_seq.setdefault(checkpoint.seq, []).append(checkpoint)

    expected_seq = anchor.seq + 1 if anchor else 1
    expected_prev = anchor.head_hash if anchor else GENESIS_HASH
    floor = anchor.seq if anchor else 0
    where = "tenant_id IS NULL" if tenant_id is None else "tenant_id = %s"
    params = [] if tenant_id is None else [tenant_id]
    last_hash = None
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.itersize = _FETCH
        cursor.execute(_EVENT_SQL.format(where=where), params)
        while True:
            rows = cursor.fetchmany(_FETCH)
            if not rows:
                break
            for row in rows:
                event = dict(zip(_NAMES, row[:16], strict=True))
                # The standard parser: orjson turns integers beyond 64 bits into floats.
                event["metadata"] = json.loads(event["metadata"]) if event["metadata"] else {}
                seq, prev_hash, stored_hash = row[16], row[17], row[18]
                event_id = str(event["id"])
                report.events += 1
                if report.first_seq is None:
                    report.first_seq = seq
                report.last_seq = seq
                if seq <= floor:
                    report.fail(f"event {event_id} (seq {seq}) sits before the retention anchor at seq {floor} (inserted)", event_id=event_id)
                    continue
                ok = True
                if seq != expected_seq:
                    what = "missing (deleted)" if seq > expected_seq else "out of order (inserted or reordered)"
                    report.fail(f"event {event_id} (seq {seq}): expected seq {expected_seq}; events are {what}", event_id=event_id)
                    ok = False
                if prev_hash != expected_prev:
                    report.fail(f"event {event_id} (seq {seq}): prev_hash does not match the event before it", event_id=event_id)
                    ok = False
                if link_hash(prev_hash, seq, body_hash(event)) != stored_hash:
                    report.fail(f"event {event_id} (seq {seq}): content does not match its hash (edited)", event_id=event_id)
                    ok = False
                for checkpoint in by_seq.get(seq, ()):
                    if checkpoint.head_hash != stored_hash:
                        report.fail(f"event {event_id} (seq {seq}): differs from signed checkpoint {checkpoint.pk}", event_id=event_id)
                        ok = False
                if ok:
                    report.valid_events += 1
                expected_seq = seq + 1
                expected_prev = stored_hash
                last_hash = stored_hash

    last_seq = report.last_seq or floor
    for checkpoint in checkpoints:
        if checkpoint.seq > last_seq:
            report.fail(f"checkpoint {checkpoint.pk} covers seq {checkpoint.seq} but the chain ends at {last_seq} (events deleted)")
    head = ChainHead.objects.filter(chain=chain).first()
    if head is not None and head.last_seq > floor and (head.last_seq != last_seq or (last_hash and head.last_hash != last_hash)):
        report.fail(f"chain head says seq {head.last_seq} but the events end at seq {last_seq} (events deleted or altered)")
    return report


def chains(tenant_id: str | None = None) -> list[str]:
    if tenant_id is not None:
        return [PLATFORM_CHAIN if tenant_id in ("", "platform") else tenant_id]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chain FROM audit_chain_head UNION SELECT COALESCE(tenant_id, '') FROM audit_checkpoint ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]


def verify_all(tenant_id: str | None = None) -> list[ChainReport]:
    return [verify_chain(chain) for chain in chains(tenant_id)]
