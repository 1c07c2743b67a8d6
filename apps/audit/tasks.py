"""Celery tasks: thin, idempotent, safe to run twice (beat entries live in settings.SWITCHYARD_BEAT)."""

from __future__ import annotations

from celery import shared_task

from . import services, sinks


@shared_task(name="apps.audit.tasks.checkpoint_chains")
def checkpoint_chains() -> int:
    """Sign each chain head that moved since its last checkpoint."""
    return services.checkpoint_all_chains()


@shared_task(name="apps.audit.tasks.deliver_outbox")
def deliver_outbox() -> dict:
    """Feed the file, syslog and webhook sinks from the event outbox (backoff per sink)."""
    return sinks.deliver_outbox()


@shared_task(name="apps.audit.tasks.purge_expired_events")
def purge_expired_events() -> dict:
    """Apply every tenant's retention, anchoring each cut with a signed checkpoint."""
    return services.purge_all_tenants()
