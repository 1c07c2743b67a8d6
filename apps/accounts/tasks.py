"""Celery tasks of the accounts app: thin wrappers around services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=False)
def purge_expired_credentials() -> dict:
    """Daily: drop tokens long past expiry or revocation and sessions ended long ago."""
    return services.purge_expired_credentials()
