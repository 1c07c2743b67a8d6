"""Metrics over a period, read from rollups only, and their comparison with a tenant's SLA policy.

Definitions (the same in the console, the API, reports and credits):
- availability % = successes / (successes + server-side failures); server-side failures are
  upstream_error and error. Refusals caused by the caller (client_error, rate_limited) and
  cancelled requests are not counted against it.
- error rate % = server-side failures / all requests.
- latency p50/p95/p99 ms = nearest-rank percentiles of successful requests' latency, from the
  merged log histograms (relative error at most histogram.RELATIVE_ERROR, 0.99 %).
- response time ms = mean latency of successful requests.
- throughput tokens/s = completion tokens / total seconds spent serving successful requests.
- error budget = (100 - availability target) % of the period's counted requests; burn rate over a
  window = the window's failure ratio / (1 - target), so 1.0 spends the budget exactly by the end
  of a 30-day period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection

from . import histogram
from .models import MeasurementWindow, SlaPolicy
from .rollups import floor_hour, floor_minute

POINTS = (50, 95, 99)
UNBOUNDED_BURN = 1e6
COUNTERS = ["requests", "successes", "client_errors", "rate_limited", "upstream_errors", "gateway_errors",
            "cancelled", "prompt_tokens", "completion_tokens", "cost", "latency_sum_ms"]

# metric -> (label, unit, direction): "min" targets are floors, "max" targets are ceilings.
METRICS = {
    "availability": ("Availability", "%", "min"),
    "error_rate": ("Error rate", "%", "max"),
    "latency_p50": ("Latency p50", "ms", "max"),
    "latency_p95": ("Latency p95", "ms", "max"),
    "latency_p99": ("Latency p99", "ms", "max"),
    "response_time": ("Mean response time", "ms", "max"),
    "throughput": ("Throughput", "tokens/s", "min"),
}


@dataclass
class Totals:
    requests: int = 0
    successes: int = 0
    client_errors: int = 0
    rate_limited: int = 0
    upstream_errors: int = 0
    gateway_errors: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal("0")
    latency_sum_ms: float = 0.0
    percentiles: dict = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return self.upstream_errors + self.gateway_errors

    @property
    def counted(self) -> int:
        return self.successes + self.failures

    def metrics(self) -> dict[str, float | None]:
        seconds = self.latency_sum_ms / 1000
        return {
            "availability": 100.0 * self.successes / self.counted if self.counted else None,
            "error_rate": 100.0 * self.failures / self.requests if self.requests else None,
            "latency_p50": self.percentiles.get(50),
            "latency_p95": self.percentiles.get(95),
            "latency_p99": self.percentiles.get(99),
            "response_time": self.latency_sum_ms / self.successes if self.successes else None,
            "throughput": self.completion_tokens / seconds if seconds > 0 else None,
        }


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _segments(start: datetime, end: datetime) -> list[tuple[str, str, datetime, datetime]]:
    """(table, time column, from, to): whole hours from the hour table, the ragged edges from minutes."""
    start, end = floor_minute(start), floor_minute(end)
    first_hour, last_hour = ceil_hour(start), floor_hour(end)
    if first_hour >= last_hour:
        return [("sla_minuterollup", "minute", start, end)] if start < end else []
    out = [("sla_tenanthourrollup", "hour", first_hour, last_hour)]
    if start < first_hour:
        out.append(("sla_minuterollup", "minute", start, first_hour))
    if last_hour < end:
        out.append(("sla_minuterollup", "minute", last_hour, end))
    return out


def _union(segments, columns: str, tenant_ids: list[str]) -> tuple[str, list]:
    parts, params = [], []
    for table, column, lo, hi in segments:
        # Table and column names come from _segments' constants; values are parameters.
        parts.append(f"SELECT tenant_id, {column} AS t, {columns} FROM {table} "  # noqa: S608
                     f"WHERE tenant_id = ANY(%s) AND {column} >= %s AND {column} < %s")
        params += [tenant_ids, lo, hi]
    return " UNION ALL ".join(parts), params


def _convert(name: str, value):
    if name == "cost":
        return Decimal(value)
    if name == "latency_sum_ms":
        return float(value)
    return int(value)


class TenantRollups:
    """One tenant's rollup rows for several periods that all end at `end`, read in two queries
    and aggregated here: the dashboard's window, month to date, burn windows and hourly trend share
    the same rows, and merging a few thousand sparse histograms in Python beats doing it in SQL."""

    def __init__(self, *, tenant_id: str, starts: list[datetime], end: datetime):
        self.tenant_id = tenant_id
        self.end = floor_minute(end)
        self.hour_rows: list[tuple] = []
        self.minute_rows: list[tuple] = []
        hour_ranges, minute_ranges = [], []
        for start in starts:
            for table, _, lo, hi in _segments(start, self.end):
                (hour_ranges if table == "sla_tenanthourrollup" else minute_ranges).append((lo, hi))
        if hour_ranges:
            lo, hi = min(r[0] for r in hour_ranges), max(r[1] for r in hour_ranges)
            self.hour_rows = self._fetch("sla_tenanthourrollup", "hour", [(lo, hi)])
        if minute_ranges:
            self.minute_rows = self._fetch("sla_minuterollup", "minute", sorted(set(minute_ranges)))

    def _fetch(self, table: str, column: str, ranges: list[tuple[datetime, datetime]]) -> list[tuple]:
        # An OR of ranges returns each row once even when two ranges overlap.
        condition = " OR ".join(f"({column} >= %s AND {column} < %s)" for _ in ranges)
        params: list = [self.tenant_id] + [value for pair in ranges for value in pair]
        # Tenant-hour rows carry their percentiles' buckets; minute rows get NULLs there.
        picked = "ARRAY[p50_bucket, p95_bucket, p99_bucket]" if table == "sla_tenanthourrollup" else "NULL"
        # Times as epoch seconds: parsing a thousand timestamptz values cost more than the rest of the read.
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT extract(epoch FROM {column})::bigint, {', '.join(COUNTERS)}, hist_buckets, "  # noqa: S608
                           f"hist_counts, {picked} FROM {table} WHERE tenant_id = %s AND ({condition})", params)
            return [(row[0], row[1:-3], row[-3], row[-2], row[-1]) for row in cursor.fetchall()]

    def rows_for(self, start: datetime):
        start_dt = floor_minute(start)
        first_dt, last_dt = ceil_hour(start_dt), floor_hour(self.end)
        start, first, last, end = (int(m.timestamp()) for m in (start_dt, first_dt, last_dt, self.end))
        if first >= last:
            yield from (r for r in self.minute_rows if start <= r[0] < end)
            return
        yield from (r for r in self.hour_rows if first <= r[0] < last)
        yield from (r for r in self.minute_rows if start <= r[0] < first or last <= r[0] < end)

    def totals(self, start: datetime, *, with_percentiles: bool = True) -> Totals:
        return _sum_rows(self.rows_for(start), with_percentiles)

    def hourly(self, start: datetime) -> list[dict]:
        """One point per hour from `start` that had traffic: counters, rates and percentiles."""
        by_hour: dict[int, list] = {}
        for row in self.rows_for(start):
            by_hour.setdefault(row[0] - row[0] % 3600, []).append(row)
        series = []
        for epoch in sorted(by_hour):
            rows = by_hour[epoch]
            hour = datetime.fromtimestamp(epoch, UTC)
            if len(rows) == 1 and rows[0][4] is not None:
                # A whole hour: its percentiles were picked when it was rolled up.
                t = _sum_rows(rows, False)
                t.percentiles = {p: None if b is None else histogram.bucket_value(b)
                                 for p, b in zip(POINTS, rows[0][4], strict=True)}
            else:
                t = _sum_rows(rows, True)
            series.append({"hour": hour, "requests": t.requests, "failures": t.failures, **t.metrics()})
        return series


def _sum_rows(rows, with_percentiles: bool) -> Totals:
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return Totals(percentiles=dict.fromkeys(POINTS) if with_percentiles else {})
    # Column sums in C (zip) rather than a Python loop per counter: the hourly trend calls this 720 times.
    sums = rows[0][1] if len(rows) == 1 else [sum(column) for column in zip(*(row[1] for row in rows), strict=True)]
    t = Totals(*(_convert(name, value) for name, value in zip(COUNTERS, sums, strict=True)))
    if with_percentiles:
        if len(rows) == 1:
            hist = dict(zip(rows[0][2], rows[0][3], strict=True))
        else:
            hist = {}
            for row in rows:
                histogram.merge_into(hist, row[2], row[3])
        t.percentiles = histogram.percentiles(hist, POINTS)
    return t


def totals_by_tenant(*, tenant_ids: list[str], start: datetime, end: datetime) -> dict[str, Totals]:
    """Each tenant's counters over [start, end) (minute resolution, no percentiles), summed in SQL:
    what the evaluation of every tenant reads for its multi-day burn window."""
    segments = _segments(start, end)
    out = {tenant_id: Totals() for tenant_id in tenant_ids}
    if not segments or not tenant_ids:
        return out
    union, params = _union(segments, ", ".join(COUNTERS), tenant_ids)
    sums = ", ".join(f"COALESCE(sum({c}), 0)" for c in COUNTERS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tenant_id, {sums} FROM ({union}) AS r GROUP BY tenant_id", params)  # noqa: S608
        for row in cursor.fetchall():
            out[row[0]] = Totals(**{name: _convert(name, v) for name, v in zip(COUNTERS, row[1:], strict=True)})
    return out


def totals(*, tenant_id: str, start: datetime, end: datetime, with_percentiles: bool = True) -> Totals:
    """A tenant's totals over [start, end), with latency percentiles from the merged histograms."""
    return TenantRollups(tenant_id=tenant_id, starts=[start], end=end).totals(start, with_percentiles=with_percentiles)


def hourly_series(*, tenant_id: str, start: datetime, end: datetime) -> list[dict]:
    return TenantRollups(tenant_id=tenant_id, starts=[start], end=end).hourly(start)


def failure_counts(*, tenant_ids: list[str], now: datetime, windows: dict[str, timedelta]) -> dict[str, dict[str, tuple[int, int]]]:
    """{tenant: {window name: (failures, counted)}} over windows ending with the current minute,
    from minute rollups (windows of a day or more come from hour rollups plus minute edges)."""
    end = floor_minute(now) + timedelta(minutes=1)
    out: dict[str, dict[str, tuple[int, int]]] = {t: {} for t in tenant_ids}
    short = {name: w for name, w in windows.items() if w <= timedelta(hours=6)}
    if short and tenant_ids:
        longest = max(short.values())
        filters = ", ".join(
            "COALESCE(sum(upstream_errors + gateway_errors) FILTER (WHERE minute >= %s), 0), "
            "COALESCE(sum(successes + upstream_errors + gateway_errors) FILTER (WHERE minute >= %s), 0)"
            for _ in short
        )
        params: list = []
        for w in short.values():
            params += [end - w, end - w]
        params += [tenant_ids, end - longest, end]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT tenant_id, {filters} FROM sla_minuterollup "  # noqa: S608
                "WHERE tenant_id = ANY(%s) AND minute >= %s AND minute < %s GROUP BY tenant_id", params,
            )
            for row in cursor.fetchall():
                for index, name in enumerate(short):
                    out[row[0]][name] = (int(row[1 + 2 * index]), int(row[2 + 2 * index]))
    for name, w in windows.items():
        if name in short:
            continue
        for tenant_id, t in totals_by_tenant(tenant_ids=tenant_ids, start=end - w, end=end).items():
            out[tenant_id][name] = (t.failures, t.counted)
    for tenant_id in tenant_ids:
        for name in windows:
            out[tenant_id].setdefault(name, (0, 0))
    return out


def burn_rate(failures: int, counted: int, availability_target) -> float:
    if counted == 0:
        return 0.0
    allowed = 1 - float(availability_target) / 100
    ratio = failures / counted
    if allowed <= 0:
        # A 100 % target has no budget: any failure burns without bound. A large finite number,
        # because the evaluation is stored as JSON, which has no infinity.
        return UNBOUNDED_BURN if failures else 0.0
    return ratio / allowed


# --- periods ----------------------------------------------------------------------------------

def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)


def policy_window(policy: SlaPolicy, now: datetime) -> tuple[datetime, datetime]:
    end = floor_minute(now) + timedelta(minutes=1)
    if policy.window == MeasurementWindow.CALENDAR_MONTH:
        return month_start(now), end
    return end - timedelta(days=30), end


# --- comparing with the policy ----------------------------------------------------------------

def compare(policy: SlaPolicy, metrics: dict[str, float | None], *, period: str) -> list[dict]:
    """Violations of the policy's targets by these metrics: metric, period, expected, actual, unit, severity."""
    out = []
    first_credit = policy.credit_tiers()[-1][0] if policy.credit_tiers() else None
    for metric, expected in policy.targets().items():
        actual = metrics.get(metric)
        if expected is None or actual is None:
            continue
        label, unit, direction = METRICS[metric]
        expected_f = float(expected)
        missed = actual < expected_f if direction == "min" else actual > expected_f
        if not missed:
            continue
        if metric == "availability":
            severe = first_credit is not None and actual < float(first_credit)
        elif direction == "max":
            severe = actual > expected_f * 1.5
        else:
            severe = actual < expected_f * 0.5
        out.append({"metric": metric, "label": label, "period": period, "unit": unit, "expected": expected_f,
                    "actual": round(actual, 3), "severity": "critical" if severe else "warning"})
    return out


def recommendations(policy: SlaPolicy, metrics: dict[str, float | None], budget_remaining: float | None) -> list[str]:
    """Advice when a metric nears its target (80 % of a limit) or the error budget runs low."""
    tips = []
    error_rate, limit = metrics.get("error_rate"), policy.error_rate_max
    if error_rate is not None and limit and error_rate > 0.8 * float(limit):
        tips.append(f"Error rate is {error_rate:.2f} %, above 80 % of its {float(limit):g} % limit: "
                    "consider fallback deployments in another region or provider.")
    for point in (99, 95, 50):
        value, target = metrics.get(f"latency_p{point}"), getattr(policy, f"latency_p{point}_ms")
        if value is not None and target and value > 0.8 * target:
            tips.append(f"p{point} latency is {value:.0f} ms, above 80 % of its {target} ms target: "
                        "consider faster models, smaller max_tokens or caching repeated prompts.")
            break
    throughput, floor = metrics.get("throughput"), policy.throughput_min_tps
    if throughput is not None and floor and throughput < 1.25 * float(floor):
        tips.append(f"Throughput is {throughput:.1f} tokens/s, close to its {float(floor):g} tokens/s floor: "
                    "consider dedicated deployments or a less loaded region.")
    if budget_remaining is not None and budget_remaining < 25:
        tips.append(f"Only {max(budget_remaining, 0):.0f} % of the error budget is left: "
                    "hold risky changes and review the failing deployments.")
    return tips


# --- one tenant's whole picture ---------------------------------------------------------------

def error_budget(totals_: Totals, availability_target) -> dict:
    """The period's error budget in requests: allowed failures, used, and the % left."""
    allowed = (1 - float(availability_target) / 100) * totals_.counted
    used = totals_.failures
    if totals_.counted == 0:
        remaining = 100.0
    elif allowed <= 0:
        remaining = 100.0 if used == 0 else -100.0
    else:
        remaining = 100.0 * (1 - used / allowed)
    return {"allowed": round(allowed, 1), "used": used, "remaining_percent": round(remaining, 2)}


def assess(*, policy: SlaPolicy, tenant_id: str, now: datetime, counts: dict[str, tuple[int, int]] | None = None,
           extra_starts: tuple[datetime, ...] = ()) -> tuple[dict, TenantRollups]:
    """Everything the dashboard, the fleet view and the evaluator show for one tenant, read from
    rollups: window and month-to-date metrics, violations, the error budget and burn rates.
    Returns (result, rollups): `extra_starts` lets a caller read more periods ending now from the
    same rows (the dashboard's hourly trend)."""
    from . import alerts

    window_start, window_end = policy_window(policy, now)
    mtd_start = month_start(now)
    burn_windows = alerts.windows()
    starts = [window_start, mtd_start, *extra_starts]
    if counts is None:
        starts += [window_end - w for w in burn_windows.values()]
    rollups = TenantRollups(tenant_id=tenant_id, starts=starts, end=window_end)
    window_totals = rollups.totals(window_start)
    mtd_totals = window_totals if mtd_start == window_start else rollups.totals(mtd_start)
    window_metrics, mtd_metrics = window_totals.metrics(), mtd_totals.metrics()
    violations = compare(policy, window_metrics, period="window") + compare(policy, mtd_metrics, period="month")
    budget = error_budget(window_totals, policy.availability_target)
    if counts is None:
        counts = {}
        for name, w in burn_windows.items():
            t = rollups.totals(window_end - w, with_percentiles=False)
            counts[name] = (t.failures, t.counted)
    burns = alerts.burn_decisions(counts, policy.availability_target)
    targets = {k: (float(v) if v is not None else None) for k, v in policy.targets().items()}
    return {
        "tenant_id": tenant_id,
        "evaluated_at": now.isoformat(),
        "policy": {"id": str(policy.pk) if policy.pk and not policy._state.adding else None, "name": policy.name,
                   "window": policy.window, "window_label": policy.get_window_display()},
        "window": {"start": window_start.isoformat(), "end": window_end.isoformat(), "requests": window_totals.requests,
                   "counted": window_totals.counted, "failures": window_totals.failures},
        "month": {"start": mtd_start.isoformat(), "requests": mtd_totals.requests},
        "targets": targets,
        "metrics": window_metrics,
        "month_metrics": mtd_metrics,
        "violations": violations,
        "compliant": not any(v["period"] == "window" for v in violations),
        "budget": budget,
        "burn": burns,
        "recommendations": recommendations(policy, window_metrics, budget["remaining_percent"]),
    }, rollups
