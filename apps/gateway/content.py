"""Stored prompts and responses: written only for tenants that keep content, purged by retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from .models import StoredContent


def store_content(*, tenant_id: str, request_id: str, created_at: datetime, prompt: str, response: str,
                  encrypt: bool) -> StoredContent:
    row = StoredContent(tenant_id=tenant_id, request_id=request_id, created_at=created_at, encrypted=encrypt)
    if encrypt:
        row.prompt, row.response = prompt, response
    else:
        row.prompt_clear, row.response_clear = prompt, response
    with transaction.atomic():
        row.save(force_insert=True)
    return row


def purge_content(*, tenant_id: str, retention_days: int, now: datetime | None = None) -> int:
    """Delete the tenant's stored content older than its retention; returns the rows removed."""
    cutoff = (now or timezone.now()) - timedelta(days=retention_days)
    deleted, _ = StoredContent.objects.filter(tenant_id=tenant_id, created_at__lt=cutoff).delete()
    return deleted
