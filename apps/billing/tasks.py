"""Thin Celery tasks: budget checks every minute, the monthly invoice run, one tenant's invoice."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from . import services
from .money import parse_period


@shared_task(name="apps.billing.tasks.check_budgets")
def check_budgets() -> dict:
    return services.check_budgets()


@shared_task(name="apps.billing.tasks.monthly_invoices")
def monthly_invoices() -> dict:
    # Records reach Postgres a few seconds after their request: a month closes an hour after its end.
    return services.run_monthly_invoices(grace=timedelta(hours=1))


@shared_task(name="apps.billing.tasks.issue_tenant_invoice")
def issue_tenant_invoice(tenant_id: str, period: str) -> list[str]:
    return [i.number for i in services.issue_invoices(tenant_id=tenant_id, period_start=parse_period(period))]


@shared_task(name="apps.billing.tasks.rollup_usage")
def rollup_usage() -> dict:
    return services.rollup_recent()
