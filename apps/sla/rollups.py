"""Per-minute and per-hour rollups of the usage log, as idempotent upserts computed in Postgres.

Records reach the usage table through a Redis queue, so one can land a few seconds (or, after an
outage, minutes) after its request. Each run therefore recomputes whole minutes over the last
`lookback` minutes from the raw rows and replaces the stored values (ON CONFLICT DO UPDATE), then
recomputes the hours those minutes fall in from the minute rows: per (tenant, model, deployment)
and per tenant (with the hour's p50/p95/p99 picked, for dashboards' hourly trends). Running twice
never counts twice.

Status classes: success; client_error and rate_limited (the caller's doing); upstream_error and
error (server-side failures, which count against availability); cancelled (the client left).
Latency histograms hold successful requests only, so fast refusals do not flatter percentiles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from apps.tenants.models import Tenant

from . import histogram

USAGE_TABLE = "gateway_usagerecord"

_COUNTERS = ["requests", "successes", "client_errors", "rate_limited", "upstream_errors", "gateway_errors",
             "cancelled", "prompt_tokens", "completion_tokens", "cost", "unpriced", "latency_sum_ms"]

# Built once from this module's constants; every value is a query parameter.
_MINUTE_SQL = f"""
WITH raw AS (
    SELECT tenant_id, model, COALESCE(deployment_id::text, '') AS deployment_id,
           date_trunc('minute', created_at) AS minute, status, prompt_tokens, completion_tokens, cost, unpriced,
           latency_ms, {histogram.SQL_BUCKET} AS bucket
    FROM {USAGE_TABLE}
    WHERE created_at >= %(start)s AND created_at < %(end)s AND tenant_id = ANY(%(tenants)s)
),
hist AS (
    SELECT tenant_id, model, deployment_id, minute, array_agg(bucket ORDER BY bucket) AS buckets,
           array_agg(n ORDER BY bucket) AS counts
    FROM (SELECT tenant_id, model, deployment_id, minute, bucket, count(*)::int AS n
          FROM raw WHERE status = 'success' GROUP BY 1, 2, 3, 4, 5) AS b
    GROUP BY 1, 2, 3, 4
),
agg AS (
    SELECT tenant_id, model, deployment_id, minute,
           count(*) AS requests,
           count(*) FILTER (WHERE status = 'success') AS successes,
           count(*) FILTER (WHERE status = 'client_error') AS client_errors,
           count(*) FILTER (WHERE status = 'rate_limited') AS rate_limited,
           count(*) FILTER (WHERE status = 'upstream_error') AS upstream_errors,
           count(*) FILTER (WHERE status = 'error') AS gateway_errors,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           COALESCE(sum(prompt_tokens), 0) AS prompt_tokens,
           COALESCE(sum(completion_tokens), 0) AS completion_tokens,
           COALESCE(sum(cost), 0) AS cost,
           count(*) FILTER (WHERE unpriced) AS unpriced,
           COALESCE(sum(latency_ms) FILTER (WHERE status = 'success'), 0) AS latency_sum_ms
    FROM raw GROUP BY 1, 2, 3, 4
)
INSERT INTO sla_minuterollup (tenant_id, model, deployment_id, minute, {", ".join(_COUNTERS)}, hist_buckets, hist_counts)
SELECT agg.tenant_id, agg.model, agg.deployment_id, agg.minute, {", ".join("agg." + c for c in _COUNTERS)},
       COALESCE(hist.buckets, '{{}}'), COALESCE(hist.counts, '{{}}')
FROM agg LEFT JOIN hist USING (tenant_id, model, deployment_id, minute)
ON CONFLICT (tenant_id, model, deployment_id, minute) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COUNTERS)},
    hist_buckets = EXCLUDED.hist_buckets, hist_counts = EXCLUDED.hist_counts
"""  # noqa: S608

_HOUR_SQL = f"""
WITH m AS (
    SELECT * FROM sla_minuterollup
    WHERE minute >= %(start)s AND minute < %(end)s AND tenant_id = ANY(%(tenants)s)
),
hist AS (
    SELECT tenant_id, model, deployment_id, hour, array_agg(bucket ORDER BY bucket) AS buckets,
           array_agg(n ORDER BY bucket) AS counts
    FROM (SELECT m.tenant_id, m.model, m.deployment_id, date_trunc('hour', m.minute) AS hour, u.bucket,
                 sum(u.n)::int AS n
          FROM m, unnest(m.hist_buckets, m.hist_counts) AS u(bucket, n)
          GROUP BY 1, 2, 3, 4, 5) AS b
    GROUP BY 1, 2, 3, 4
),
agg AS (
    SELECT tenant_id, model, deployment_id, date_trunc('hour', minute) AS hour,
           {", ".join(f"sum({c}) AS {c}" for c in _COUNTERS)}
    FROM m GROUP BY 1, 2, 3, 4
)
INSERT INTO sla_hourrollup (tenant_id, model, deployment_id, hour, {", ".join(_COUNTERS)}, hist_buckets, hist_counts)
SELECT agg.tenant_id, agg.model, agg.deployment_id, agg.hour, {", ".join("agg." + c for c in _COUNTERS)},
       COALESCE(hist.buckets, '{{}}'), COALESCE(hist.counts, '{{}}')
FROM agg LEFT JOIN hist USING (tenant_id, model, deployment_id, hour)
ON CONFLICT (tenant_id, model, deployment_id, hour) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COUNTERS)},
    hist_buckets = EXCLUDED.hist_buckets, hist_counts = EXCLUDED.hist_counts
"""  # noqa: S608


_TENANT_HOUR_SQL = f"""
WITH h AS (
    SELECT * FROM sla_hourrollup WHERE tenant_id = ANY(%(tenants)s) AND hour >= %(start)s AND hour < %(end)s
),
u AS (
    SELECT h.tenant_id, h.hour, x.bucket, sum(x.n)::int AS n
    FROM h, unnest(h.hist_buckets, h.hist_counts) AS x(bucket, n) GROUP BY 1, 2, 3
),
c AS (
    SELECT tenant_id, hour, bucket, n, sum(n) OVER (PARTITION BY tenant_id, hour ORDER BY bucket) AS cum,
           sum(n) OVER (PARTITION BY tenant_id, hour) AS total
    FROM u
),
hist AS (
    SELECT tenant_id, hour, array_agg(bucket ORDER BY bucket) AS buckets, array_agg(n ORDER BY bucket) AS counts,
           {", ".join(f"min(bucket) FILTER (WHERE cum >= GREATEST(1, ceil({p} / 100.0 * total))) AS p{p}"
                      for p in (50, 95, 99))}
    FROM c GROUP BY 1, 2
),
agg AS (
    SELECT tenant_id, hour, {", ".join(f"sum({c}) AS {c}" for c in _COUNTERS)} FROM h GROUP BY 1, 2
)
INSERT INTO sla_tenanthourrollup (tenant_id, hour, {", ".join(_COUNTERS)}, hist_buckets, hist_counts,
                                  p50_bucket, p95_bucket, p99_bucket)
SELECT agg.tenant_id, agg.hour, {", ".join("agg." + c for c in _COUNTERS)},
       COALESCE(hist.buckets, '{{}}'), COALESCE(hist.counts, '{{}}'), hist.p50, hist.p95, hist.p99
FROM agg LEFT JOIN hist USING (tenant_id, hour)
ON CONFLICT (tenant_id, hour) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COUNTERS)},
    hist_buckets = EXCLUDED.hist_buckets, hist_counts = EXCLUDED.hist_counts,
    p50_bucket = EXCLUDED.p50_bucket, p95_bucket = EXCLUDED.p95_bucket, p99_bucket = EXCLUDED.p99_bucket
"""  # noqa: S608


def floor_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def rollup_range(*, start: datetime, end: datetime, tenant_ids: list[str] | None = None) -> dict:
    """Recompute the minute rollups of [start, end) (widened to whole minutes) and the hour
    rollups (per key, then per tenant) of the hours they touch. Returns the number of minute and hour rows written."""
    start = floor_minute(start)
    end = floor_minute(end) + (timedelta(minutes=1) if end != floor_minute(end) else timedelta(0))
    hour_start, hour_end = floor_hour(start), floor_hour(end - timedelta(microseconds=1)) + timedelta(hours=1)
    # The usage log is indexed by (tenant_id, created_at): naming every tenant lets Postgres use
    # it (one index range per tenant) instead of scanning the month's partition.
    raw_tenants = tenant_ids if tenant_ids is not None else list(Tenant.objects.values_list("id", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_MINUTE_SQL, {"tenants": list(raw_tenants), "start": start, "end": end})
        minutes = cursor.rowcount
        cursor.execute(_HOUR_SQL, {"tenants": list(raw_tenants), "start": hour_start, "end": hour_end})
        hours = cursor.rowcount
        cursor.execute(_TENANT_HOUR_SQL, {"tenants": list(raw_tenants), "start": hour_start, "end": hour_end})
    return {"minutes": minutes, "hours": hours, "start": start.isoformat(), "end": end.isoformat()}


def rollup_recent(*, now: datetime | None = None, lookback_minutes: int = 10) -> dict:
    """The periodic run: the last `lookback_minutes` minutes up to now, inclusive of the current one."""
    now = now or datetime.now(UTC)
    return rollup_range(start=now - timedelta(minutes=lookback_minutes), end=floor_minute(now) + timedelta(minutes=1))


def prune(*, now: datetime | None = None, minute_days: int = 35, hour_days: int = 800) -> dict:
    """Drop minute rows older than `minute_days` (hours keep the history) and hour rows past `hour_days`."""
    from .models import HourRollup, MinuteRollup, TenantHourRollup

    now = now or datetime.now(UTC)
    minutes, _ = MinuteRollup.objects.filter(minute__lt=now - timedelta(days=minute_days)).delete()
    hours, _ = HourRollup.objects.filter(hour__lt=now - timedelta(days=hour_days)).delete()
    TenantHourRollup.objects.filter(hour__lt=now - timedelta(days=hour_days)).delete()
    return {"minutes": minutes, "hours": hours}
