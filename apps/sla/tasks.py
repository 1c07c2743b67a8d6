"""Celery tasks of the SLA app: thin, idempotent, taking ids."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="apps.sla.tasks.rollup_usage")
def rollup_usage(lookback_minutes: int | None = None) -> dict:
    """Recompute the last few minutes' rollups (late records included); safe to run twice."""
    from django.conf import settings

    from .rollups import rollup_recent

    return rollup_recent(lookback_minutes=lookback_minutes or settings.SWITCHYARD_SLA_ROLLUP_LOOKBACK_MINUTES)


@shared_task(name="apps.sla.tasks.evaluate_sla")
def evaluate_sla() -> dict:
    """The minute's compliance, violations and burn-rate alerts for every tenant (fresh rollups first)."""
    from .rollups import rollup_recent
    from .services import evaluate_all

    rollup_recent(lookback_minutes=3)
    return evaluate_all()


@shared_task(bind=True, name="apps.sla.tasks.build_report", max_retries=3, acks_late=True)
def build_report(self, report_id: str) -> str:
    from .models import ReportStatus, SlaReport
    from .reports import build

    report = SlaReport.objects.select_related("tenant").filter(pk=report_id).first()
    if report is None:
        return "missing"
    try:
        build(report)
    except Exception as exc:
        logger.exception("SLA report failed", extra={"report_id": report_id})
        if self.request.retries < self.max_retries and not self.request.is_eager:
            raise self.retry(exc=exc, countdown=30) from None
        SlaReport.objects.filter(pk=report_id).update(status=ReportStatus.FAILED,
                                                      error=f"Report generation failed ({exc.__class__.__name__}).")
        return "failed"
    return "ready"


@shared_task(name="apps.sla.tasks.monthly_reports")
def monthly_reports() -> int:
    from .services import schedule_monthly_reports

    return schedule_monthly_reports()


@shared_task(name="apps.sla.tasks.prune_rollups")
def prune_rollups() -> dict:
    from .rollups import prune

    return prune()
