"""Compliance against a policy: violations with type, expected, actual and severity; the error
budget; the stored status the fleet view reads; and the credits handed to billing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.sla import compliance, services
from apps.sla.models import SlaCredit, SlaPolicy, SlaStatus, SlaViolation
from apps.sla.rollups import rollup_range

from .conftest import stream


def own_policy(tenant, **fields):
    defaults = {"name": "Custom", "availability_target": Decimal("99.5"), "error_rate_max": Decimal("1"),
                "latency_p99_ms": 1000, "credit_schedule": [{"below": "99.5", "credit_percent": "10"},
                                                            {"below": "98", "credit_percent": "25"}]}
    return SlaPolicy.objects.create(tenant=tenant, **(defaults | fields))


def test_a_tenant_without_a_policy_gets_its_tiers_default(personas):
    policy = services.policy_for(personas.tenant_a)
    assert policy.tenant_id is None and policy.tier == personas.tenant_a.tier
    assert policy.availability_target == Decimal("99.9")


def test_missed_targets_become_violations_with_type_expected_actual_and_severity(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    own_policy(tenant)
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=30, per_minute=100, error_ratio=0.03,
                        latency=lambda rng: rng.uniform(900, 1400)))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=30))

    result = services.evaluate_tenant(tenant=tenant, now=base_time + timedelta(minutes=40))

    by_metric = {(v["metric"], v["period"]): v for v in result["violations"]}
    availability = by_metric[("availability", "window")]
    assert availability["expected"] == 99.5 and availability["actual"] == pytest.approx(97.0, abs=0.01)
    assert availability["severity"] == "critical"  # below the 99.5 % credit threshold
    assert by_metric[("error_rate", "window")]["actual"] == pytest.approx(3.0, abs=0.01)
    assert by_metric[("latency_p99", "window")]["severity"] == "warning"  # ~1400 ms vs 1000: under 1.5x
    assert not result["compliant"]
    assert result["budget"]["remaining_percent"] < 0  # 3 % failing against a 0.5 % budget
    stored = SlaViolation.objects.filter(tenant=tenant, resolved_at__isnull=True)
    assert {(v.metric, v.period) for v in stored} == set(by_metric)
    status = SlaStatus.objects.get(tenant=tenant)
    assert status.compliant is False and status.open_violations == len(by_metric)
    assert any("fallback" in tip for tip in result["recommendations"])
    assert any("caching" in tip for tip in result["recommendations"])


def test_a_violation_is_resolved_when_the_metric_recovers(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    own_policy(tenant, window="rolling_30d", latency_p99_ms=None, error_rate_max=None)
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=10, per_minute=100, error_ratio=0.01))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=10))
    services.evaluate_tenant(tenant=tenant, now=base_time + timedelta(minutes=11))
    assert SlaViolation.objects.filter(tenant=tenant, metric="availability", resolved_at__isnull=True).exists()

    # Enough good traffic afterwards lifts the window's availability over 99.5 %.
    usage_writer(stream(tenant_id=tenant.pk, start=base_time + timedelta(minutes=10), minutes=30, per_minute=100, seed=5))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=40))
    services.evaluate_tenant(tenant=tenant, now=base_time + timedelta(minutes=41))
    row = SlaViolation.objects.get(tenant=tenant, metric="availability", period="window")
    assert row.resolved_at is not None


def test_credits_follow_the_schedule_and_name_the_breach(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    policy = own_policy(tenant)
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=20, per_minute=100, error_ratio=0.03))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=20))
    start, end = base_time, base_time + timedelta(hours=1)

    credits = services.credits_for_period(tenant_id=tenant.pk, start=start, end=end)
    again = services.credits_for_period(tenant_id=tenant.pk, start=start, end=end)

    assert len(credits) == 1 and again[0].pk == credits[0].pk
    credit = credits[0]
    # 97 % is below 98 % (25 %) as well as 99.5 % (10 %): the larger credit applies.
    assert (credit.policy, credit.credit_percent, credit.expected, credit.actual) == (
        policy, Decimal("25.000"), Decimal("98.000"), Decimal("97.000"))
    assert SlaCredit.objects.filter(tenant=tenant).count() == 1


def test_no_credit_is_owed_when_the_target_is_met(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    own_policy(tenant)
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=5, per_minute=100))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=5))
    assert services.credits_for_period(tenant_id=tenant.pk, start=base_time, end=base_time + timedelta(hours=1)) == []


def test_a_period_must_be_timezone_aware_and_ordered(personas, base_time):
    with pytest.raises(ValidationError):
        services.credits_for_period(tenant_id=personas.tenant_a.pk, start=base_time, end=base_time)
    with pytest.raises(ValidationError):
        services.credits_for_period(tenant_id=personas.tenant_a.pk, start=base_time.replace(tzinfo=None),
                                    end=base_time.replace(tzinfo=None) + timedelta(days=1))


def test_the_calendar_month_window_starts_on_the_first(personas, base_time):
    policy = own_policy(personas.tenant_a, window="calendar_month")
    start, _ = compliance.policy_window(policy, base_time)
    assert (start.day, start.hour, start.minute) == (1, 0, 0)


def test_the_fleet_evaluation_covers_every_active_tenant(personas, usage_writer, base_time):
    usage_writer(stream(tenant_id=personas.tenant_b.pk, start=base_time, minutes=5, per_minute=50, error_ratio=0.2))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=5))
    summary = services.evaluate_all(now=base_time + timedelta(minutes=6))
    assert summary["tenants"] == 2 and summary["non_compliant"] == 1
    assert SlaStatus.objects.get(tenant=personas.tenant_b).compliant is False
    assert SlaStatus.objects.get(tenant=personas.tenant_a).compliant is True


def test_a_hundred_percent_target_is_evaluated_and_stored_without_error(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    own_policy(tenant, availability_target=Decimal("100"), credit_schedule=[])
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=5, per_minute=50, error_ratio=0.02))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=5))
    result = services.evaluate_tenant(tenant=tenant, now=base_time + timedelta(minutes=5))
    assert result["burn"]["burn_fast"]["firing"] is True
    assert SlaStatus.objects.get(tenant=tenant).budget_remaining == -100.0
