"""Billing reads: prices, unpriced models, cost allocation, chargeback, budgets and invoices.

Allocation and chargeback read the usage records of ONE tenant over [start, end) with both bounds
on created_at, so Postgres prunes the monthly partitions and walks the (tenant_id, created_at)
index; one GROUPING SETS statement computes the tenant total and every breakdown in a single pass.
Costs are summed at full precision (8 places); rounding to cents happens once, per invoice line
(apps.billing.money).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection

from apps.gateway.models import ModelPrice

from .models import Budget, BudgetAlert, Invoice
from .money import ZERO, to_cents

logger = logging.getLogger(__name__)

DIMENSIONS = ("department", "project", "user", "model", "api_key")
UNATTRIBUTED = "Unattributed"
_COLUMNS = {"department": "department_id", "project": "project_id", "user": "user_id", "model": "model",
            "api_key": "api_key_id"}


@dataclass
class AllocationRow:
    key: str | None           # the id (or model name); None = unattributed
    label: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal             # full precision
    share: float = 0.0        # % of the tenant total

    @property
    def amount(self) -> Decimal:
        return to_cents(self.cost)

    @property
    def unattributed(self) -> bool:
        return self.key is None

    def as_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": str(self.cost), "amount": str(self.amount),
                "share_percent": round(self.share, 2), "unattributed": self.unattributed}


@dataclass
class Allocation:
    tenant_id: str
    start: datetime
    end: datetime
    currency: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = ZERO
    unpriced_requests: int = 0
    other_currencies: list[str] = field(default_factory=list)
    by: dict[str, list[AllocationRow]] = field(default_factory=lambda: {d: [] for d in DIMENSIONS})

    @property
    def amount(self) -> Decimal:
        return to_cents(self.cost)

    def top_users(self, n: int = 10) -> list[AllocationRow]:
        return [row for row in self.by["user"] if not row.unattributed][:n]

    def as_dict(self) -> dict:
        return {
            "tenant": self.tenant_id, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "currency": self.currency, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "cost": str(self.cost), "amount": str(self.amount),
            "unpriced_requests": self.unpriced_requests, "other_currencies": self.other_currencies,
            "by": {dim: [row.as_dict() for row in rows] for dim, rows in self.by.items()},
        }


_SOURCE_COLUMNS = ("currency, model, department_id, project_id, user_id, api_key_id, requests, prompt_tokens, "
                   "completion_tokens, cost, unpriced_requests")
_RAW_SELECT = (
    "SELECT currency, model, department_id, project_id, user_id, api_key_id, "
    "CASE WHEN cost IS NULL THEN 0 ELSE 1 END AS requests, "
    "CASE WHEN cost IS NULL THEN 0 ELSE prompt_tokens END AS prompt_tokens, "
    "CASE WHEN cost IS NULL THEN 0 ELSE completion_tokens END AS completion_tokens, coalesce(cost, 0) AS cost, "
    "CASE WHEN unpriced THEN 1 ELSE 0 END AS unpriced_requests "
    "FROM gateway_usagerecord WHERE tenant_id = %s AND created_at >= %s AND created_at < %s AND (cost IS NOT NULL OR unpriced)"
)


def _day_floor(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def _day_ceil(moment: datetime) -> datetime:
    floor = _day_floor(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def rollup_watermark() -> datetime:
    from .models import RollupState

    state = RollupState.objects.filter(pk="usage").first()
    return state.complete_until if state else datetime(1970, 1, 1, tzinfo=UTC)


def usage_source(*, tenant_id: str, start: datetime, end: datetime, watermark: datetime | None = None):
    """SQL (and params) yielding a tenant's usage over [start, end) as rows of _SOURCE_COLUMNS:
    whole days before the rollup watermark from the daily rollups, the rest (today, partial days)
    from the raw records, each bounded on created_at so partitions prune."""
    watermark = rollup_watermark() if watermark is None else watermark
    lo, hi = _day_ceil(start), min(_day_floor(end), _day_floor(watermark))
    parts, params = [], []
    if lo < hi:
        parts.append(f"SELECT {_SOURCE_COLUMNS} FROM billing_usagerollup "  # noqa: S608 - constants only
                     "WHERE tenant_id = %s AND day >= %s AND day < %s")
        params += [tenant_id, lo.date(), hi.date()]
        raw_ranges = [(start, lo), (hi, end)]
    else:
        raw_ranges = [(start, end)]
    for a, b in raw_ranges:
        if a < b:
            parts.append(_RAW_SELECT)
            params += [tenant_id, a, b]
    if not parts:
        parts.append(f"SELECT {_SOURCE_COLUMNS} FROM billing_usagerollup WHERE false")  # noqa: S608 - constants only
    return " UNION ALL ".join(parts), params


_ALLOCATION_SQL = """
SELECT currency, GROUPING(department_id), GROUPING(project_id), GROUPING(user_id), GROUPING(model),
       GROUPING(api_key_id), department_id, project_id, user_id, model, api_key_id,
       sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost), sum(unpriced_requests)
FROM ({source}) AS src
GROUP BY GROUPING SETS ((currency), (currency, department_id), (currency, project_id), (currency, user_id),
                        (currency, model), (currency, api_key_id))
"""


def allocation(*, tenant_id: str, start: datetime, end: datetime, currency: str | None = None) -> Allocation:
    """Cost of a tenant's priced usage over [start, end), by department, project, user, model and
    API key. Usage without a department (project, user, key) is one row labelled Unattributed.
    `currency` None picks the currency with the largest spend (others are listed)."""
    source, params = usage_source(tenant_id=tenant_id, start=start, end=end)
    with connection.cursor() as cursor:
        cursor.execute(_ALLOCATION_SQL.format(source=source), params)
        rows = cursor.fetchall()
    unpriced = sum(int(r[15]) for r in rows if all(r[1:6]))
    totals = {r[0]: r for r in rows if all(r[1:6]) and r[0] and r[11]}
    if currency is None:
        currency = max(totals, key=lambda c: totals[c][14]) if totals else "USD"
    result = Allocation(tenant_id=tenant_id, start=start, end=end, currency=currency, unpriced_requests=unpriced,
                        other_currencies=sorted(c for c in totals if c != currency))
    total = totals.get(currency)
    if total is None:
        return result
    result.requests, result.prompt_tokens, result.completion_tokens, result.cost = (
        int(total[11]), int(total[12]), int(total[13]), total[14])
    raw: dict[str, list[tuple]] = {d: [] for d in DIMENSIONS}
    for r in rows:
        if r[0] != currency or not r[11]:
            continue
        for index, dim in enumerate(DIMENSIONS):
            if r[1 + index] == 0:
                raw[dim].append((r[6 + index], int(r[11]), int(r[12]), int(r[13]), r[14]))
    labels = _labels(tenant_id, raw)
    for dim, entries in raw.items():
        out = []
        for key, requests, prompt, completion, cost in entries:
            key = None if key is None else str(key)
            label = UNATTRIBUTED if key is None else labels[dim].get(key, f"#{key}")
            share = float(cost / result.cost * 100) if result.cost else 0.0
            out.append(AllocationRow(key, label, requests, prompt, completion, cost, share))
        out.sort(key=lambda row: (-row.cost, row.label))
        result.by[dim] = out
    return result


def _labels(tenant_id: str, raw: dict[str, list[tuple]]) -> dict[str, dict[str, str]]:
    from apps.accounts.models import User
    from apps.gateway.models import ApiKey
    from apps.tenants.models import Department, Project

    def ids(dim):
        return [k for k, *_ in raw[dim] if k is not None]

    return {
        "department": {str(d.pk): f"{d.name} ({d.code})" for d in Department.objects.filter(tenant_id=tenant_id,
                                                                                           pk__in=ids("department"))},
        "project": {str(p.pk): f"{p.name} ({p.code})" for p in Project.objects.filter(tenant_id=tenant_id,
                                                                                     pk__in=ids("project"))},
        "user": {str(u.pk): u.email for u in User.objects.filter(pk__in=ids("user"))},
        "model": {k: k for k in ids("model")},
        "api_key": {str(k.pk): f"{k.name} ({k.prefix})" for k in ApiKey.objects.filter(pk__in=ids("api_key"))},
    }


# --- invoice lines: one per model and department ------------------------------------------------

@dataclass
class UsageLine:
    currency: str
    model: str
    department_id: int | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal

    @property
    def amount(self) -> Decimal:
        return to_cents(self.cost)


def usage_lines(*, tenant_id: str, start: datetime, end: datetime) -> list[UsageLine]:
    """The period's priced usage grouped by currency, model and department (the invoice's lines)."""
    source, params = usage_source(tenant_id=tenant_id, start=start, end=end)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT currency, model, department_id, sum(requests), sum(prompt_tokens), sum(completion_tokens), "  # noqa: S608
            f"sum(cost) FROM ({source}) AS src WHERE requests > 0 GROUP BY currency, model, department_id "
            f"ORDER BY currency, model, department_id NULLS LAST", params)
        return [UsageLine(c, m, d, int(n), int(p), int(o), cost) for c, m, d, n, p, o, cost in cursor.fetchall()]


def unpriced_count(*, tenant_id: str, start: datetime, end: datetime) -> int:
    source, params = usage_source(tenant_id=tenant_id, start=start, end=end)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(sum(unpriced_requests), 0) FROM ({source}) AS src", params)  # noqa: S608
        return int(cursor.fetchone()[0])


def month_lines_from_rollups(*, start: datetime, end: datetime) -> dict[str, tuple[list[UsageLine], int]]:
    """Every tenant's invoice lines and unpriced count for whole days [start, end), from the
    rollups in one statement (the invoice run refreshes them first)."""
    out: dict[str, tuple[list[UsageLine], int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tenant_id, currency, model, department_id, sum(requests), sum(prompt_tokens), "
            "sum(completion_tokens), sum(cost), sum(unpriced_requests) FROM billing_usagerollup "
            "WHERE day >= %s AND day < %s GROUP BY tenant_id, currency, model, department_id "
            "ORDER BY tenant_id, currency, model, department_id NULLS LAST", [start.date(), end.date()])
        for tenant_id, c, m, d, n, p, o, cost, unpriced in cursor.fetchall():
            lines, count = out.get(tenant_id, ([], 0))
            if n:
                lines.append(UsageLine(c, m, d, int(n), int(p), int(o), cost))
            out[tenant_id] = (lines, count + int(unpriced))
    return out


def chargeback(*, tenant_id: str, start: datetime, end: datetime, currency: str | None = None,
               with_credits: bool = True) -> dict:
    """The chargeback report: total, by department and project, top 10 users, SLA credits, net due.
    The subtotal follows the invoice rule (sum of per-line rounded amounts), so the report and the
    invoice of the same period agree to the cent."""
    alloc = allocation(tenant_id=tenant_id, start=start, end=end, currency=currency)
    lines = [line for line in usage_lines(tenant_id=tenant_id, start=start, end=end) if line.currency == alloc.currency]
    subtotal = sum((line.amount for line in lines), ZERO)
    credits, credits_unavailable = [], False
    if with_credits:
        from apps.sla.services import credits_for_period

        try:
            earned = credits_for_period(tenant_id=tenant_id, start=start, end=end)
        except Exception:
            # The report still shows the charges; it says the credits could not be computed.
            logger.exception("SLA credits unavailable for a chargeback report", extra={"tenant": tenant_id})
            earned, credits_unavailable = [], True
        for credit in earned:
            amount = to_cents(subtotal * credit.credit_percent / Decimal(100))
            credits.append({"percent": credit.credit_percent, "amount": amount, "metric": credit.metric,
                            "expected": credit.expected, "actual": credit.actual, "policy": str(credit.policy_id)})
    credit_total = sum((c["amount"] for c in credits), ZERO)
    return {"allocation": alloc, "lines": lines, "subtotal": subtotal, "credits": credits,
            "credit_total": credit_total, "net_due": subtotal - credit_total, "top_users": alloc.top_users(10),
            "credits_unavailable": credits_unavailable}


def chargeback_as_dict(report: dict) -> dict:
    alloc = report["allocation"]
    return {
        "tenant": alloc.tenant_id, "start": alloc.start.isoformat(), "end": alloc.end.isoformat(),
        "currency": alloc.currency, "total_cost": str(alloc.cost), "subtotal": str(report["subtotal"]),
        "by_department": [r.as_dict() for r in alloc.by["department"]],
        "by_project": [r.as_dict() for r in alloc.by["project"]],
        "top_users": [r.as_dict() for r in report["top_users"]],
        "sla_credits": [{k: str(v) for k, v in c.items()} for c in report["credits"]],
        "credit_total": str(report["credit_total"]), "net_due": str(report["net_due"]),
        "unpriced_requests": alloc.unpriced_requests, "sla_credits_unavailable": report["credits_unavailable"],
    }


# --- prices, budgets, invoices ---------------------------------------------------------------

def prices():
    """Every price row, history included (newest first per model)."""
    return ModelPrice.objects.order_by("model", "-effective_from")


def current_prices(now: datetime) -> list[ModelPrice]:
    return list(ModelPrice.objects.filter(effective_from__lte=now).order_by("model", "-effective_from")
                .distinct("model"))


def unpriced_models(*, now: datetime, days: int = 90) -> list[dict]:
    """Models that were requested without a price in the last `days` (bounded: partitions prune)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT model, count(*), count(DISTINCT tenant_id), min(created_at), max(created_at) "
            "FROM gateway_usagerecord WHERE created_at >= %s AND created_at < %s AND unpriced "
            "GROUP BY model ORDER BY count(*) DESC", [now - timedelta(days=days), now + timedelta(minutes=5)])
        rows = cursor.fetchall()
    priced_now = {p.model for p in current_prices(now)}
    return [{"model": m, "requests": n, "tenants": t, "first_seen": first, "last_seen": last,
             "priced_since": m in priced_now} for m, n, t, first, last in rows]


def budgets_for(user, tenant):
    return (Budget.objects.restrict(user, "view").filter(tenant=tenant)
            .select_related("department", "project"))


def budget_alerts_for(user, tenant):
    return BudgetAlert.objects.restrict(user, "view").filter(tenant=tenant).select_related("budget")


def invoices_for(user, tenant):
    return Invoice.objects.restrict(user, "view").filter(tenant=tenant)
