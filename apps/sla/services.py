"""SLA writes: policies, the per-minute evaluation (status, violations, alerts), reports and credits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.services import record_event
from apps.tenants.models import Tenant, TenantStatus, Tier

from . import alerts, compliance
from .models import SlaCredit, SlaPolicy, SlaReport, SlaStatus, SlaViolation

logger = logging.getLogger(__name__)

# Each tier's default policy, created on first use; platform admins may edit them afterwards.
TIER_DEFAULTS: dict[str, dict] = {
    Tier.FREE: {"name": "Free tier SLA", "availability_target": Decimal("99.0"), "error_rate_max": Decimal("2.0"),
                "credit_schedule": []},
    Tier.PRO: {"name": "Pro tier SLA", "availability_target": Decimal("99.9"), "error_rate_max": Decimal("1.0"),
               "latency_p50_ms": 2000, "latency_p95_ms": 8000, "latency_p99_ms": 15000,
               "credit_schedule": [{"below": "99.9", "credit_percent": "10"}, {"below": "99", "credit_percent": "25"}]},
    Tier.ENTERPRISE: {"name": "Enterprise tier SLA", "availability_target": Decimal("99.95"),
                      "error_rate_max": Decimal("0.5"), "latency_p50_ms": 1500, "latency_p95_ms": 6000,
                      "latency_p99_ms": 10000,
                      "credit_schedule": [{"below": "99.95", "credit_percent": "10"},
                                          {"below": "99.9", "credit_percent": "25"},
                                          {"below": "99", "credit_percent": "50"}]},
}

POLICY_FIELDS = ["name", "availability_target", "error_rate_max", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                 "response_time_ms", "throughput_min_tps", "window", "credit_schedule", "enabled"]


def default_policy(tier: str) -> SlaPolicy:
    policy = SlaPolicy.objects.filter(tenant__isnull=True, tier=tier).first()
    if policy is None:
        policy, _ = SlaPolicy.objects.get_or_create(tenant=None, tier=tier, defaults=TIER_DEFAULTS.get(tier, {}))
    return policy


def policy_for(tenant: Tenant) -> SlaPolicy:
    """The tenant's own enabled policy, else its tier's default."""
    own = SlaPolicy.objects.filter(tenant=tenant, enabled=True).first()
    return own or default_policy(tenant.tier)


def _policy_metadata(policy: SlaPolicy) -> dict:
    return {f: (str(getattr(policy, f)) if getattr(policy, f) is not None else None) for f in POLICY_FIELDS
            if f != "credit_schedule"} | {"credit_tiers": len(policy.credit_schedule or [])}


def save_policy(*, actor, tenant: Tenant | None, tier: str = "", request=None, **fields) -> SlaPolicy:
    """Create or update a tenant's policy (tenant given) or a tier's default (tenant None, tier given)."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError({name: "Unknown policy field." for name in unknown})
    with transaction.atomic():
        if tenant is not None:
            policy = SlaPolicy.objects.select_for_update().filter(tenant=tenant).first() or SlaPolicy(tenant=tenant)
        else:
            policy = SlaPolicy.objects.select_for_update().filter(tenant__isnull=True, tier=tier).first() \
                or SlaPolicy(tier=tier, **TIER_DEFAULTS.get(tier, {}))
        created = policy._state.adding
        for name, value in fields.items():
            setattr(policy, name, value)
        policy.full_clean()
        policy.save()
        record_event(
            action="sla.policy.created" if created else "sla.policy.updated",
            tenant_id=tenant.pk if tenant else None, actor=actor, resource_type="sla_policy",
            resource_id=str(policy.pk), request=request, metadata=_policy_metadata(policy),
        )
    return policy


def delete_policy(*, actor, policy: SlaPolicy, request=None) -> None:
    """Remove a tenant's own policy: the tier default applies again."""
    if policy.tenant_id is None:
        raise ValidationError("A tier's default policy cannot be deleted; edit it instead.")
    with transaction.atomic():
        record_event(action="sla.policy.deleted", tenant_id=policy.tenant_id, actor=actor, resource_type="sla_policy",
                     resource_id=str(policy.pk), request=request)
        if policy.credits.exists():
            policy.enabled = False
            policy.save(update_fields=["enabled", "updated_at"])
        else:
            policy.delete()


# --- the evaluation every minute ----------------------------------------------------------------

def _sync_violations(*, tenant: Tenant, policy: SlaPolicy, found: list[dict], now: datetime) -> int:
    open_rows = {(v.metric, v.period): v for v in SlaViolation.objects.select_for_update().filter(
        tenant=tenant, resolved_at__isnull=True)}
    seen = set()
    for item in found:
        key = (item["metric"], item["period"])
        seen.add(key)
        row = open_rows.get(key)
        values = {"expected": Decimal(str(item["expected"])).quantize(Decimal("0.001")),
                  "actual": Decimal(str(item["actual"])).quantize(Decimal("0.001")),
                  "severity": item["severity"], "unit": item["unit"], "policy": policy, "last_seen_at": now}
        if row is None:
            SlaViolation.objects.create(tenant=tenant, metric=item["metric"], period=item["period"], started_at=now,
                                        **values)
        else:
            for name, value in values.items():
                setattr(row, name, value)
            row.save()
    for key, row in open_rows.items():
        if key not in seen:
            row.resolved_at = now
            row.save(update_fields=["resolved_at", "updated_at"])
    return len(found)


def evaluate_tenant(*, tenant: Tenant, now: datetime | None = None, counts: dict | None = None) -> dict:
    """Compute a tenant's compliance, store it, open/resolve violations and advance its alerts."""
    now = now or datetime.now(UTC)
    policy = policy_for(tenant)
    result, _ = compliance.assess(policy=policy, tenant_id=tenant.pk, now=now, counts=counts)
    with transaction.atomic():
        open_count = _sync_violations(tenant=tenant, policy=policy, found=result["violations"], now=now)
        SlaStatus.objects.update_or_create(tenant=tenant, defaults={
            "policy": policy, "evaluated_at": now, "compliant": result["compliant"], "open_violations": open_count,
            "availability": result["metrics"]["availability"],
            "budget_remaining": result["budget"]["remaining_percent"],
            "burn_rate_1h": result["burn"]["burn_fast"]["long"], "requests": result["window"]["requests"],
            "data": result,
        })
        events = []
        for rule in alerts.BURN_RULES:
            decision = result["burn"][rule.name]
            message = (f"Error budget burn rate is {decision['long']}x over {decision['long_window']} and "
                       f"{decision['short']}x over {decision['short_window']} (threshold {rule.factor}x, "
                       f"{rule.budget_spent} of the 30-day budget). Availability target {policy.availability_target} %.")
            events.append(alerts.apply(tenant_id=tenant.pk, rule=rule.name, firing=decision["firing"],
                                       severity=rule.severity, now=now, values=decision, title="", message=message))
        breaches = [v for v in result["violations"] if v["period"] == "window"]
        message = "; ".join(f"{v['label']} {v['actual']:g} {v['unit']} (target {v['expected']:g} {v['unit']})"
                            for v in breaches) or "Every SLA target is met again."
        severity = "critical" if any(v["severity"] == "critical" for v in breaches) else "warning"
        events.append(alerts.apply(tenant_id=tenant.pk, rule=alerts.BREACH_RULE, firing=bool(breaches),
                                   severity=severity, now=now,
                                   values={"violations": [{k: v[k] for k in ("metric", "expected", "actual")} for v in breaches]},
                                   title=", ".join(v["label"] for v in breaches), message=message))
    result["alerts_sent"] = [e.pk for e in events if e is not None]
    return result


def evaluate_all(*, now: datetime | None = None) -> dict:
    """The minute's evaluation of every active tenant. Burn-rate windows are read in one batch."""
    now = now or datetime.now(UTC)
    tenants = list(Tenant.objects.filter(status=TenantStatus.ACTIVE))
    counts = compliance.failure_counts(tenant_ids=[t.pk for t in tenants], now=now, windows=alerts.windows())
    out = {"tenants": 0, "non_compliant": 0, "alerts": 0}
    for tenant in tenants:
        try:
            result = evaluate_tenant(tenant=tenant, now=now, counts=counts[tenant.pk])
        except Exception:
            # One tenant's failure must not stop every other tenant's alerts; the next minute retries.
            logger.exception("SLA evaluation failed", extra={"tenant_id": tenant.pk})
            out["failed"] = out.get("failed", 0) + 1
            continue
        out["tenants"] += 1
        out["non_compliant"] += 0 if result["compliant"] else 1
        out["alerts"] += len(result["alerts_sent"])
    return out


# --- credits handed to billing -------------------------------------------------------------------

def credits_for_period(*, tenant_id: str, start: datetime, end: datetime) -> list[SlaCredit]:
    """The SLA credits a tenant earned over [start, end): one SlaCredit row per policy and period
    (stored, so billing and the console agree, and recomputed idempotently on each call), with the
    credit % from the policy's schedule and the availability breach that earned it. Returns only
    rows with a credit above zero."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValidationError("The period needs timezone-aware start and end, with end after start.")
    tenant = Tenant.objects.get(pk=tenant_id)
    policy = policy_for(tenant)
    totals = compliance.totals(tenant_id=tenant_id, start=start, end=end, with_percentiles=False)
    availability = totals.metrics()["availability"]
    credit, threshold = Decimal("0"), None
    if availability is not None:
        for below, percent in policy.credit_tiers():
            if Decimal(str(availability)) < below:
                credit, threshold = percent, below
                break
    with transaction.atomic():
        if credit == 0:
            SlaCredit.objects.filter(tenant_id=tenant_id, policy=policy, period_start=start, period_end=end).delete()
            return []
        row, _ = SlaCredit.objects.update_or_create(
            tenant_id=tenant_id, policy=policy, period_start=start, period_end=end,
            defaults={"credit_percent": credit, "metric": "availability", "expected": threshold,
                      "actual": Decimal(str(availability)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP),
                      "requests": totals.counted, "computed_at": datetime.now(UTC)},
        )
    return [row]


# --- reports --------------------------------------------------------------------------------------

def request_report(*, actor, tenant: Tenant, start: datetime, end: datetime, request=None,
                   monthly: bool = False) -> SlaReport:
    """Queue a report of [start, end); a Celery task builds the PDF and CSV after commit."""
    if end <= start:
        raise ValidationError({"period_end": "The end must be after the start."})
    if end - start > timedelta(days=400):
        raise ValidationError({"period_end": "A report covers at most 400 days."})
    from .tasks import build_report

    with transaction.atomic():
        report = SlaReport.objects.create(tenant=tenant, period_start=start, period_end=end, monthly=monthly,
                                          requested_by=actor if getattr(actor, "pk", None) else None)
        if actor is not None:
            record_event(action="sla.report.requested", tenant_id=tenant.pk, actor=actor, resource_type="sla_report",
                         resource_id=str(report.pk), request=request,
                         metadata={"start": start.isoformat(), "end": end.isoformat()})
        transaction.on_commit(lambda: build_report.delay(str(report.pk)))
    return report


def record_report_download(*, actor, report: SlaReport, fmt: str, request=None) -> None:
    """A report leaving the system is an export of the tenant's data: audit who took it."""
    record_event(action="sla.report.downloaded", tenant_id=report.tenant_id, actor=actor, resource_type="sla_report",
                 resource_id=str(report.pk), request=request, metadata={"format": fmt})


def schedule_monthly_reports(*, now: datetime | None = None) -> int:
    """Make last month's report for every active tenant that has none yet (safe to run often)."""
    now = now or datetime.now(UTC)
    end = compliance.month_start(now)
    start = compliance.month_start(end - timedelta(days=1))
    made = 0
    for tenant in Tenant.objects.filter(status=TenantStatus.ACTIVE, created_at__lt=end):
        if SlaReport.objects.filter(tenant=tenant, monthly=True, period_start=start, period_end=end).exists():
            continue
        request_report(actor=None, tenant=tenant, start=start, end=end, monthly=True)
        made += 1
    return made
