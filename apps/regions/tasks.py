"""Celery tasks of the regions app: active health checks with failover evaluation, and history pruning."""

from __future__ import annotations

from celery import shared_task

from . import failover, healthchecks


@shared_task(ignore_result=True)
def run_health_checks() -> dict:
    """Probe every deployment once, then move traffic if a model's active region went bad (or failback is due).

    Safe to run twice at once: the second run finds the probe lock held and only re-evaluates."""
    probes = healthchecks.run_checks()
    events = failover.evaluate()
    return {"probed": len(probes), "failed": sum(1 for p in probes if not p.ok), "events": len(events)}


@shared_task(ignore_result=True)
def prune_health_history() -> int:
    return healthchecks.prune_history()
