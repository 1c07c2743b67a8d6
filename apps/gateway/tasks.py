"""Periodic gateway work: drain queued usage records, keep partitions ahead, purge old content."""

from __future__ import annotations

from celery import shared_task

from . import services, usage


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def drain_usage() -> int:
    """Store queued usage records and audit events (the servers drain too; this covers a fleet
    that stopped with records still queued)."""
    return usage.drain_all()


@shared_task
def maintain_usage_partitions() -> dict:
    return services.maintain_usage_partitions()


@shared_task
def purge_stored_content() -> dict:
    return services.purge_stored_content()
