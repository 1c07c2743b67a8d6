"""Rollups: percentiles from merged log histograms agree with exact percentiles on the raw data
within the stated relative error, and recomputing never counts a record twice."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from django.db import connection

from apps.sla import compliance, histogram
from apps.sla.models import HourRollup, MinuteRollup
from apps.sla.rollups import rollup_range, rollup_recent

from .conftest import stream

TOLERANCE = histogram.RELATIVE_ERROR + 1e-9


def raw_latencies(tenant_id, start, end) -> list[float]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT latency_ms FROM gateway_usagerecord WHERE tenant_id = %s AND status = 'success' "
                       "AND created_at >= %s AND created_at < %s", [tenant_id, start, end])
        return [row[0] for row in cursor.fetchall()]


def test_the_stated_error_bound_is_under_one_percent():
    assert histogram.RATIO == 1.02
    assert histogram.RELATIVE_ERROR < 0.01


def test_a_histogram_percentile_is_within_the_bound_of_the_exact_one_for_any_value():
    rng = random.Random(1)
    values = [rng.lognormvariate(5.5, 1.2) + 1 for _ in range(20_000)]
    hist = histogram.build(values)
    for p in (1, 50, 90, 95, 99, 99.9, 100):
        exact = histogram.exact_percentile(values, p)
        estimate = histogram.percentiles(hist, [p])[p]
        assert abs(estimate - exact) / exact <= TOLERANCE, p


def test_percentiles_from_rollups_agree_with_exact_percentiles_on_the_raw_records(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    records = []
    for index, model in enumerate(["gpt-sim", "claude-sim"]):
        records += stream(tenant_id=tenant.pk, start=base_time, minutes=180, per_minute=60, error_ratio=0.01,
                          latency=lambda rng: rng.lognormvariate(6.0, 0.9), seed=11 + index, model=model)
    usage_writer(records)
    rollup_range(start=base_time, end=base_time + timedelta(minutes=180))

    # Ragged edges (minute rollups) around whole hours (hour rollups), every model merged.
    start, end = base_time + timedelta(minutes=17), base_time + timedelta(minutes=163)
    totals = compliance.totals(tenant_id=tenant.pk, start=start, end=end)
    exact_values = raw_latencies(tenant.pk, start, end)
    assert totals.successes == len(exact_values)
    for p in (50, 95, 99):
        exact = histogram.exact_percentile(exact_values, p)
        assert abs(totals.percentiles[p] - exact) / exact <= TOLERANCE, (p, totals.percentiles[p], exact)

    for point in compliance.hourly_series(tenant_id=tenant.pk, start=base_time, end=base_time + timedelta(hours=3)):
        hour_values = raw_latencies(tenant.pk, point["hour"], point["hour"] + timedelta(hours=1))
        for p in (50, 95, 99):
            exact = histogram.exact_percentile(hour_values, p)
            assert abs(point[f"latency_p{p}"] - exact) / exact <= TOLERANCE


def test_running_the_rollup_twice_never_double_counts(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=10, per_minute=30, error_ratio=0.1))
    for _ in range(2):
        rollup_range(start=base_time, end=base_time + timedelta(minutes=10))
    totals = compliance.totals(tenant_id=tenant.pk, start=base_time, end=base_time + timedelta(hours=1))
    assert totals.requests == 300
    assert totals.failures == 30
    assert MinuteRollup.objects.filter(tenant_id=tenant.pk).count() == 10
    hour = HourRollup.objects.get(tenant_id=tenant.pk)
    assert (hour.requests, hour.upstream_errors, sum(hour.hist_counts)) == (300, 30, 270)


def test_a_late_record_is_counted_by_the_next_run(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=3, per_minute=10))
    now = base_time + timedelta(minutes=3, seconds=5)
    rollup_recent(now=now, lookback_minutes=10)
    # A record of minute 1 lands after that run (the usage queue was slow).
    usage_writer([{"created_at": base_time + timedelta(minutes=1, seconds=59), "tenant_id": tenant.pk,
                   "status": "error", "latency_ms": 5.0}])
    rollup_recent(now=now + timedelta(seconds=15), lookback_minutes=10)
    minute = MinuteRollup.objects.get(tenant_id=tenant.pk, minute=base_time + timedelta(minutes=1))
    assert (minute.requests, minute.gateway_errors, minute.successes) == (11, 1, 10)
    assert HourRollup.objects.get(tenant_id=tenant.pk).requests == 31


def test_rollups_keep_tokens_cost_and_error_classes(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    statuses = ["success", "success", "client_error", "rate_limited", "upstream_error", "error", "cancelled"]
    usage_writer([{"created_at": base_time + timedelta(seconds=i), "tenant_id": tenant.pk, "status": s,
                   "prompt_tokens": 10, "completion_tokens": 5, "cost": "0.00100000"} for i, s in enumerate(statuses)])
    rollup_range(start=base_time, end=base_time + timedelta(minutes=1))
    row = MinuteRollup.objects.get(tenant_id=tenant.pk)
    assert (row.requests, row.successes, row.client_errors, row.rate_limited, row.upstream_errors, row.gateway_errors,
            row.cancelled) == (7, 2, 1, 1, 1, 1, 1)
    assert (row.prompt_tokens, row.completion_tokens, str(row.cost)) == (70, 35, "0.00700000")
    metrics = compliance.totals(tenant_id=tenant.pk, start=base_time, end=base_time + timedelta(minutes=1)).metrics()
    # Availability counts only server-side failures: 2 successes of 4 counted requests.
    assert math.isclose(metrics["availability"], 50.0)
    assert math.isclose(metrics["error_rate"], 100 * 2 / 7)


def test_a_tenants_hour_merges_its_models_and_keeps_its_percentiles(personas, usage_writer, base_time):
    from apps.sla.models import TenantHourRollup

    tenant = personas.tenant_a
    for index, model in enumerate(["gpt-sim", "claude-sim", "llama-sim"]):
        usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=60, per_minute=20, seed=index, model=model,
                            latency=lambda rng, i=index: rng.uniform(100, 300) * (i + 1)))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=60))
    row = TenantHourRollup.objects.get(tenant_id=tenant.pk, hour=base_time)
    assert row.requests == 3600 and HourRollup.objects.filter(tenant_id=tenant.pk).count() == 3
    values = raw_latencies(tenant.pk, base_time, base_time + timedelta(hours=1))
    for p, bucket in ((50, row.p50_bucket), (95, row.p95_bucket), (99, row.p99_bucket)):
        exact = histogram.exact_percentile(values, p)
        assert abs(histogram.bucket_value(bucket) - exact) / exact <= TOLERANCE


def test_the_backfill_command_recomputes_a_period_idempotently(personas, usage_writer, base_time):
    from io import StringIO

    from django.core.management import call_command

    tenant = personas.tenant_a
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=90, per_minute=10))
    out = StringIO()
    for _ in range(2):
        call_command("sla_rollup", "--since", base_time.isoformat(), "--until", (base_time + timedelta(hours=2)).isoformat(),
                     "--chunk-hours", "1", stdout=out)
    assert "recomputed 90 minute rows" in out.getvalue()
    assert compliance.totals(tenant_id=tenant.pk, start=base_time, end=base_time + timedelta(hours=2)).requests == 900


def test_the_periodic_tasks_are_scheduled_and_run(personas, usage_writer, settings):
    from datetime import UTC, datetime

    from apps.sla import tasks

    assert settings.SWITCHYARD_BEAT["sla-evaluate"] == ("apps.sla.tasks.evaluate_sla", 60)
    assert settings.SWITCHYARD_BEAT["sla-rollup-usage"][0] == "apps.sla.tasks.rollup_usage"
    usage_writer(stream(tenant_id=personas.tenant_a.pk, start=datetime.now(UTC) - timedelta(minutes=2), minutes=2,
                        per_minute=5))
    assert tasks.rollup_usage()["minutes"] >= 2
    assert tasks.evaluate_sla()["tenants"] == 2
