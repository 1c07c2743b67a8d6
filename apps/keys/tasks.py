"""Celery tasks of the keys app: thin, take keyring ids, return counts (never keys or values)."""

from __future__ import annotations

from celery import shared_task

from . import services
from .models import DataKey, KeyState


@shared_task(acks_late=True, ignore_result=False)
def rotate_due_keys() -> dict:
    """Daily: rotate every keyring past its rotation period, then move rows off old versions of
    every keyring that still has some (also catching up after a missed re-encryption)."""
    rotated = services.rotate_due_keys()
    pending = sorted(set(
        DataKey.objects.filter(state=KeyState.DECRYPT_ONLY, keyring__destroyed_at__isnull=True)
        .values_list("tenant_id", flat=True)
    ) | set(rotated))
    for ring_id in pending:
        reencrypt_tenant_rows.delay(ring_id)
    return {"rotated": len(rotated), "reencryption_queued": len(pending)}


@shared_task(acks_late=True, ignore_result=False)
def reencrypt_tenant_rows(ring_id: str) -> dict:
    """Resume or start the keyring's re-encryption job; safe to run twice or concurrently."""
    job = services.reencrypt_tenant(tenant_id=ring_id or None)
    if job is None:
        return {"status": "no_keyring"}
    return {"status": job.status, "rows_reencrypted": job.rows_reencrypted, "rows_failed": job.rows_failed}
