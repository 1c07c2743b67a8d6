"""Billing writes: model prices, budgets (and the hard limits pushed to the gateway), budget
alerts, invoices and credit notes, and reconciliation. Keyword-only, one transaction each."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from apps.audit.services import record_event
from apps.core.redis import get_redis
from apps.gateway import quotas
from apps.gateway import services as gateway_services
from apps.gateway.models import ModelPrice

from . import selectors
from .models import (
    ALERT_THRESHOLDS,
    Budget,
    BudgetAlert,
    BudgetScope,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceSequence,
    LineKind,
)
from .money import ZERO, add_months, budget_period_bounds, month_start, period_label, to_cents

logger = logging.getLogger(__name__)


# --- prices -------------------------------------------------------------------------------------

def set_price(*, actor, model: str, input_per_1k: Decimal, output_per_1k: Decimal, currency: str = "USD",
              effective_from: datetime | None = None, request=None) -> ModelPrice:
    """Add a price row. History is kept and a change applies from its date only: a price may not
    start in the past (records already priced stay as they were), except for a model that has never
    been priced, whose first price may be back-dated for reference (already-recorded requests are
    not re-priced either way)."""
    now = datetime.now(UTC)
    effective_from = effective_from or now
    if effective_from.tzinfo is None:
        raise ValidationError({"effective_from": "Give a timezone-aware moment (UTC)."})
    model = (model or "").strip()
    if not model:
        raise ValidationError({"model": "Name the model."})
    currency = (currency or "").strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise ValidationError({"currency": "A three-letter ISO 4217 code, e.g. USD."})
    for name, value in (("input_per_1k", input_per_1k), ("output_per_1k", output_per_1k)):
        if value is None or not Decimal(value).is_finite() or Decimal(value) < 0:
            raise ValidationError({name: "A price of zero or more."})
    already_priced = ModelPrice.objects.filter(model=model).exists()
    if already_priced and effective_from < now - timedelta(seconds=60):
        raise ValidationError({"effective_from": "A price change applies from now or a future date, never "
                                                 "retroactively."})
    if ModelPrice.objects.filter(model=model, effective_from=effective_from).exists():
        raise ValidationError({"effective_from": "This model already has a price starting at that moment."})
    # The gateway owns ModelPrice and its writer (with the audit event); billing adds the rules above.
    price = gateway_services.set_model_price(actor=actor, model=model, input_per_1k=Decimal(input_per_1k),
                                             output_per_1k=Decimal(output_per_1k), currency=currency,
                                             effective_from=effective_from, request=request)
    _forget_price_cache()
    return price


def delete_future_price(*, actor, price: ModelPrice, request=None) -> None:
    """Withdraw a price that has not started yet; a price already in force is history and stays."""
    if price.effective_from <= datetime.now(UTC):
        raise ValidationError("A price already in force is history and cannot be removed; add a new price instead.")
    with transaction.atomic():
        record_event(action="billing.price_withdrawn", tenant_id=None, actor=actor, resource_type="model_price",
                     resource_id=str(price.pk), request=request,
                     metadata={"model": price.model, "effective_from": price.effective_from.isoformat()})
        price.delete()
    _forget_price_cache()


def _forget_price_cache() -> None:
    from apps.gateway import pricing

    pricing.forget_prices()


# --- budgets ------------------------------------------------------------------------------------

def save_budget(*, actor, tenant, scope: str, amount: Decimal, period: str = "month", currency: str = "USD",
                hard_limit: bool = False, enabled: bool = True, department=None, project=None, budget=None,
                request=None) -> Budget:
    """Create or change a budget; its hard limit reaches the gateway when the transaction commits."""
    errors = {}
    if scope not in BudgetScope.values:
        errors["scope"] = "One of tenant, department, project."
    if scope == BudgetScope.DEPARTMENT and (department is None or department.tenant_id != tenant.pk):
        errors["department"] = "Choose a department of this tenant."
    if scope == BudgetScope.PROJECT and (project is None or project.tenant_id != tenant.pk):
        errors["project"] = "Choose a project of this tenant."
    if amount is None or not Decimal(amount).is_finite() or Decimal(amount) < 0:
        errors["amount"] = "An amount of zero or more."
    if period not in ("day", "month"):
        errors["period"] = "day or month."
    if errors:
        raise ValidationError(errors)
    budget = budget or Budget(tenant=tenant)
    budget.scope = scope
    budget.department = department if scope == BudgetScope.DEPARTMENT else None
    budget.project = project if scope == BudgetScope.PROJECT else None
    budget.amount, budget.period, budget.currency = to_cents(amount), period, (currency or "USD").upper()
    budget.hard_limit, budget.enabled = hard_limit, enabled
    creating = budget._state.adding
    try:
        with transaction.atomic():
            budget.save()
            record_event(action="billing.budget_created" if creating else "billing.budget_changed",
                         tenant_id=tenant.pk, actor=actor, resource_type="budget", resource_id=str(budget.pk),
                         request=request, metadata={"scope": budget.scope, "scope_id": budget.scope_id,
                                                    "amount": str(budget.amount), "period": period,
                                                    "hard_limit": hard_limit, "enabled": enabled})
            transaction.on_commit(lambda: push_budget(budget_id=budget.pk))
    except IntegrityError:
        raise ValidationError({"scope": "This scope already has a budget; change that one."}) from None
    return budget


def delete_budget(*, actor, budget: Budget, request=None) -> None:
    with transaction.atomic():
        record_event(action="billing.budget_deleted", tenant_id=budget.tenant_id, actor=actor,
                     resource_type="budget", resource_id=str(budget.pk), request=request,
                     metadata={"scope": budget.scope, "scope_id": budget.scope_id})
        key = quotas.budget_limit_key(budget.tenant_id, budget.scope, budget.scope_id)
        budget.delete()
        transaction.on_commit(lambda: get_redis().delete(key))


def budget_spend(*, budget: Budget, now: datetime | None = None) -> Decimal:
    """What the budget's scope has spent in its current period (priced usage, full precision)."""
    start, end = budget_period_bounds(budget.period, now or datetime.now(UTC))
    source, params = selectors.usage_source(tenant_id=str(budget.tenant_id), start=start, end=end)
    sql = f"SELECT coalesce(sum(cost), 0) FROM ({source}) AS src WHERE requests > 0 AND currency = %s"  # noqa: S608
    params.append(budget.currency)
    if budget.scope in (BudgetScope.DEPARTMENT, BudgetScope.PROJECT):
        sql += f" AND {budget.scope}_id = %s"
        params.append(int(budget.scope_id))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# --- daily usage rollups ---------------------------------------------------------------------

_ROLLUP_INSERT = """
INSERT INTO billing_usagerollup (tenant_id, day, currency, model, department_id, project_id, user_id, api_key_id,
                                 requests, prompt_tokens, completion_tokens, cost, unpriced_requests)
SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, currency, model, department_id, project_id, user_id,
       api_key_id, count(cost), coalesce(sum(prompt_tokens) FILTER (WHERE cost IS NOT NULL), 0),
       coalesce(sum(completion_tokens) FILTER (WHERE cost IS NOT NULL), 0), coalesce(sum(cost), 0),
       count(*) FILTER (WHERE unpriced)
FROM gateway_usagerecord
WHERE created_at >= %s AND created_at < %s AND (cost IS NOT NULL OR unpriced) {tenant_filter}
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 1, 2
"""


def rollup_usage(*, start: datetime, end: datetime, tenant_id: str | None = None) -> int:
    """Rebuild the daily rollups of whole UTC days [start, end) (of one tenant, or all) from the
    usage records, in one transaction; a rerun replaces the same rows. Returns rows written.
    Rows are written in (tenant, day) order so one tenant's month sits on few pages."""
    lo, hi = start.date(), end.date()
    tenant_filter = "AND tenant_id = %s" if tenant_id else ""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('billing:rollup'))")
        cursor.execute("DELETE FROM billing_usagerollup WHERE day >= %s AND day < %s " + tenant_filter,  # noqa: S608
                       [lo, hi] + ([tenant_id] if tenant_id else []))
        cursor.execute(_ROLLUP_INSERT.format(tenant_filter=tenant_filter),
                       [datetime(lo.year, lo.month, lo.day, tzinfo=UTC), datetime(hi.year, hi.month, hi.day, tzinfo=UTC)]
                       + ([tenant_id] if tenant_id else []))
        return cursor.rowcount


def rollup_recent(*, now: datetime | None = None) -> dict:
    """Every few minutes: roll up every finished day since the watermark (and yesterday again, for
    records that land late), then move the watermark to the start of today. Today stays raw."""
    from apps.gateway import partitions

    from .models import RollupState

    now = now or datetime.now(UTC)
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    state = RollupState.objects.filter(pk="usage").first()
    if state is None:
        existing = partitions.existing_partitions()
        start = existing[0][1] if existing else today - timedelta(days=1)
    else:
        start = min(state.complete_until, today) - timedelta(days=1)
    rows = rollup_usage(start=start, end=today)
    RollupState.objects.update_or_create(pk="usage", defaults={"complete_until": today})
    return {"from": start.isoformat(), "until": today.isoformat(), "rows": rows}


# Raises the period's spend counter to at least the recorded spend (never lowers it: the counter
# also holds reservations of requests in flight and records still on their way to Postgres).
_SEED_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > current then redis.call('SET', KEYS[1], floor) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return math.max(current, floor)
"""


def push_budget(*, budget_id, now: datetime | None = None) -> None:
    """Write (or remove) the budget's hard limit where the gateway's admission reads it, and seed
    the period's spend counter from the recorded usage. Idempotent."""
    budget = Budget.objects.filter(pk=budget_id).first()
    client = get_redis()
    if budget is None:
        return
    key = quotas.budget_limit_key(budget.tenant_id, budget.scope, budget.scope_id)
    if not (budget.enabled and budget.hard_limit):
        client.delete(key)
        return
    now = now or datetime.now(UTC)
    spent = budget_spend(budget=budget, now=now)
    spend_key = quotas.budget_spend_key(budget.tenant_id, budget.scope, budget.scope_id, budget.period,
                                        now.timestamp())
    _start, end = budget_period_bounds(budget.period, now)
    ttl = int((end - now).total_seconds()) + 86400
    client.eval(_SEED_LUA, 1, spend_key, quotas.to_budget_units(spent), ttl)
    client.hset(key, mapping={"limit": quotas.to_budget_units(budget.amount), "period": budget.period})


def check_budgets(*, now: datetime | None = None) -> dict:
    """Every minute: re-push hard limits (Redis may have lost them) and send each threshold alert
    (50, 80, 100 %) once per budget and period, through the tenant's notification channels."""
    from apps.core.notifications import notify

    now = now or datetime.now(UTC)
    sent = 0
    budgets = list(Budget.objects.filter(enabled=True).select_related("department", "project"))
    for budget in budgets:
        try:
            push_budget(budget_id=budget.pk, now=now)
        except Exception:  # Redis down: the alerts below still go out
            logger.warning("budget hard limit could not be pushed", extra={"budget": str(budget.pk)})
        spent = budget_spend(budget=budget, now=now)
        percent = (spent / budget.amount * 100) if budget.amount else (Decimal(100) if spent > 0 else ZERO)
        start, _end = budget_period_bounds(budget.period, now)
        for threshold in ALERT_THRESHOLDS:
            if percent < threshold:
                break
            with transaction.atomic():
                _alert, created = BudgetAlert.objects.get_or_create(
                    budget=budget, period_start=start, threshold=threshold,
                    defaults={"tenant_id": budget.tenant_id, "spent": spent})
                if not created:
                    continue
                notify(tenant_id=budget.tenant_id, event="budget.threshold",
                       severity="critical" if threshold >= 100 else "warning",
                       title=f"Budget {threshold}% reached: {budget.scope_label}",
                       message=(f"{budget.scope_label} has spent {to_cents(spent)} {budget.currency} of its "
                                f"{budget.amount} {budget.currency} {budget.period}ly budget ({percent:.1f}%)."
                                + (" Requests that would exceed it are refused." if budget.hard_limit else "")),
                       link=f"/billing/{budget.tenant_id}/budgets/",
                       dedup_key=f"budget:{budget.pk}:{start:%Y%m%d}:{threshold}", dedup_seconds=40 * 86400)
                record_event(action="billing.budget_threshold", tenant_id=budget.tenant_id, actor=None,
                             resource_type="budget", resource_id=str(budget.pk),
                             metadata={"threshold": threshold, "spent": str(to_cents(spent)),
                                       "amount": str(budget.amount), "period_start": start.isoformat()})
                sent += 1
    return {"budgets": len(budgets), "alerts": sent}


# --- invoices -----------------------------------------------------------------------------------

def _next_number(year: int) -> str:
    """The next invoice number of the year, gap-free: the counter row is locked until the caller's
    transaction ends, and rolls back with it."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO billing_invoicesequence (year, last) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                       [year])
    sequence = InvoiceSequence.objects.select_for_update().get(pk=year)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"{settings.BILLING_INVOICE_PREFIX}-{year}-{sequence.last:06d}"


def _actor_label(actor) -> str:
    return getattr(actor, "email", "") or ("system" if actor is None else str(actor))


def issue_invoices(*, tenant_id: str, period_start: datetime, actor=None, request=None,
                   now: datetime | None = None, precomputed: tuple | None = None) -> list[Invoice]:
    """Close a month for a tenant: one invoice per currency it used, with lines by model and
    department, the period's SLA credits and totals. Idempotent per (tenant, period, currency):
    an invoice already issued is returned as it is. Returns the period's invoices.
    `precomputed` (lines, unpriced count) comes from the all-tenant run's single pass."""
    now = now or datetime.now(UTC)
    start = month_start(period_start)
    end = add_months(start, 1)
    if end > now:
        raise ValidationError({"period": f"The period {period_label(start)} has not ended yet; it can be "
                                         "invoiced from the 1st of the next month."})
    with transaction.atomic():
        # One tenant's period at a time: a concurrent run waits here, then finds the invoices.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"billing:{tenant_id}:{start:%Y%m}"])
        existing = {i.currency: i for i in Invoice.objects.filter(tenant_id=tenant_id, period_start=start,
                                                                  kind=InvoiceKind.INVOICE)}
        if precomputed is None:
            # The month's rollups are brought up to date from the records first (see _refresh_from).
            rollup_usage(start=_refresh_from(start, end), end=end, tenant_id=tenant_id)
            lines = selectors.usage_lines(tenant_id=tenant_id, start=start, end=end)
            unpriced = selectors.unpriced_count(tenant_id=tenant_id, start=start, end=end)
        else:
            lines, unpriced = precomputed
        currencies = sorted({line.currency for line in lines} - set(existing))
        if not currencies:
            return list(existing.values())
        from apps.sla.services import credits_for_period

        try:
            credits = credits_for_period(tenant_id=tenant_id, start=start, end=end)
        except Exception:
            # Never issue an invoice without its credits: refuse now, the next run retries.
            logger.exception("SLA credits unavailable; invoice not issued", extra={"tenant": tenant_id})
            raise ValidationError({"period": "The period's SLA credits cannot be computed right now; "
                                             "the invoice was not issued. Try again later."}) from None
        names = _department_names(tenant_id)
        issued = []
        for currency in currencies:
            mine = [line for line in lines if line.currency == currency]
            subtotal = sum((line.amount for line in mine), ZERO)
            credit_rows = [(c, to_cents(subtotal * c.credit_percent / Decimal(100))) for c in credits]
            credit_total = sum((amount for _c, amount in credit_rows), ZERO)
            invoice = Invoice.objects.create(
                tenant_id=tenant_id, number=_next_number(now.year), kind=InvoiceKind.INVOICE, period_start=start,
                period_end=end, currency=currency, subtotal=subtotal, credits=credit_total,
                total=subtotal - credit_total, usage_cost=sum((line.cost for line in mine), ZERO),
                requests=sum(line.requests for line in mine), unpriced_requests=unpriced, issued_at=now,
                issued_by=_actor_label(actor))
            rows = [InvoiceLine(invoice=invoice, position=i, kind=LineKind.USAGE, model=line.model,
                                department_id=line.department_id,
                                description=f"{line.model} — {names.get(line.department_id, 'Unattributed (no department)')}",
                                requests=line.requests, prompt_tokens=line.prompt_tokens,
                                completion_tokens=line.completion_tokens, cost=line.cost, amount=line.amount)
                    for i, line in enumerate(mine, start=1)]
            for credit, amount in credit_rows:
                rows.append(InvoiceLine(
                    invoice=invoice, position=len(rows) + 1, kind=LineKind.CREDIT, cost=-amount, amount=-amount,
                    description=f"SLA credit {credit.credit_percent}%: {credit.metric} {credit.actual}% "
                                f"below {credit.expected}%"))
            InvoiceLine.objects.bulk_create(rows)
            record_event(action="billing.invoice_issued", tenant_id=tenant_id, actor=actor, resource_type="invoice",
                         resource_id=invoice.number, request=request,
                         metadata={"period": period_label(start), "currency": currency, "subtotal": str(subtotal),
                                   "credits": str(credit_total), "total": str(invoice.total)})
            issued.append(invoice)
        return list(existing.values()) + issued


def _refresh_from(start: datetime, end: datetime) -> datetime:
    """Where an invoice must rebuild the month's rollups from: days before the watermark are rolled
    up already (the periodic run re-reads the last of them for records that land late), so only the
    day before the watermark onwards is read again; with no watermark in the month, all of it.
    reconcile_billing checks the result against the raw records independently."""
    watermark = selectors.rollup_watermark()
    if watermark <= start:
        return start
    return max(start, min(watermark, end) - timedelta(days=1))


def _department_names(tenant_id: str) -> dict[int, str]:
    from apps.tenants.models import Department

    return {d.pk: f"{d.name} ({d.code})" for d in Department.objects.filter(tenant_id=tenant_id)}


def run_monthly_invoices(*, period_start: datetime | None = None, now: datetime | None = None,
                         grace: timedelta = timedelta(hours=1)) -> dict:
    """Invoice the last closed month (or `period_start`'s) for every tenant; safe to run twice.
    A month counts as closed `grace` after its end (records land a few seconds late)."""
    from apps.tenants.models import Tenant

    now = now or datetime.now(UTC)
    start = month_start(period_start) if period_start else add_months(month_start(now - grace), -1)
    end = add_months(start, 1)
    counts = {"period": period_label(start), "tenants": 0, "invoices": 0, "failed": []}
    tenant_ids = list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
    done = set(Invoice.objects.filter(period_start=start, kind=InvoiceKind.INVOICE)
               .values_list("tenant_id", flat=True).distinct())
    counts["tenants"] = len(tenant_ids)
    counts["invoices"] = Invoice.objects.filter(period_start=start, kind=InvoiceKind.INVOICE).count()
    todo = [t for t in tenant_ids if t not in done]
    if not todo or end > now:
        return counts
    # Bring every tenant's rollups of the month up to date in one pass; lines are then read per tenant.
    rollup_usage(start=_refresh_from(start, end), end=end)
    lines = selectors.month_lines_from_rollups(start=start, end=end)
    for tenant_id in todo:
        try:
            counts["invoices"] += len(issue_invoices(tenant_id=tenant_id, period_start=start, now=now,
                                                     precomputed=lines.get(tenant_id, ([], 0))))
        except Exception:
            # One tenant's failure must not stop the others; the next run retries it.
            logger.exception("invoice run failed for a tenant", extra={"tenant": tenant_id})
            counts["failed"].append(tenant_id)
    return counts


def issue_credit_note(*, actor, invoice: Invoice, amount: Decimal, reason: str, request=None) -> Invoice:
    """Correct an issued invoice: a credit note (negative amounts) that references it."""
    errors = {}
    amount = to_cents(amount) if amount is not None else None
    if invoice.kind != InvoiceKind.INVOICE:
        errors["invoice"] = "Only an invoice can be credited."
    if amount is None or amount <= 0:
        errors["amount"] = "A positive amount."
    if not (reason or "").strip():
        errors["reason"] = "Say why the invoice is corrected."
    if errors:
        raise ValidationError(errors)
    now = datetime.now(UTC)
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        credited = sum((-n.total for n in locked.credit_notes.all()), ZERO)
        if amount > locked.total - credited:
            raise ValidationError({"amount": f"At most {locked.total - credited} {locked.currency} is left to credit."})
        note = Invoice.objects.create(
            tenant_id=locked.tenant_id, number=_next_number(now.year), kind=InvoiceKind.CREDIT_NOTE, corrects=locked,
            period_start=locked.period_start, period_end=locked.period_end, currency=locked.currency,
            subtotal=-amount, credits=ZERO, total=-amount, usage_cost=ZERO, reason=reason.strip()[:300],
            issued_at=now, issued_by=_actor_label(actor))
        InvoiceLine.objects.create(invoice=note, position=1, kind=LineKind.CORRECTION, cost=-amount, amount=-amount,
                                   description=f"Correction of {locked.number}: {reason.strip()[:200]}")
        record_event(action="billing.credit_note_issued", tenant_id=locked.tenant_id, actor=actor,
                     resource_type="invoice", resource_id=note.number, request=request,
                     metadata={"corrects": locked.number, "amount": str(amount), "currency": locked.currency})
    return note


# --- reconciliation -----------------------------------------------------------------------------

@dataclass
class ReconcileResult:
    tenant_id: str
    period: str
    currency: str
    invoice: str
    expected: Decimal | None
    invoiced: Decimal | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


_EXPECTED_SQL = """
SELECT tenant_id, currency, sum(round(line_cost, 2)), sum(line_cost)
FROM (SELECT tenant_id, currency, sum(cost) AS line_cost FROM gateway_usagerecord
      WHERE created_at >= %s AND created_at < %s AND cost IS NOT NULL
      GROUP BY tenant_id, currency, model, department_id) lines
GROUP BY tenant_id, currency
"""


def reconcile(*, period_start: datetime) -> list[ReconcileResult]:
    """Check every invoice of a month against the usage records, recomputed independently in SQL
    with the same rounding (per model and department line, half up, to the cent): the invoiced
    subtotal must equal it, the lines must add up, and no tenant's usage may be left uninvoiced."""
    start = month_start(period_start)
    end = add_months(start, 1)
    with connection.cursor() as cursor:
        cursor.execute(_EXPECTED_SQL, [start, end])
        expected = {(t, c): (rounded, raw) for t, c, rounded, raw in cursor.fetchall()}
    results = []
    invoices = Invoice.objects.filter(period_start=start, kind=InvoiceKind.INVOICE).prefetch_related("lines")
    seen = set()
    for invoice in invoices:
        seen.add((invoice.tenant_id, invoice.currency))
        rounded, raw = expected.get((invoice.tenant_id, invoice.currency), (ZERO, ZERO))
        lines = list(invoice.lines.all())
        usage_sum = sum((line.amount for line in lines if line.kind == LineKind.USAGE), ZERO)
        credit_sum = -sum((line.amount for line in lines if line.kind == LineKind.CREDIT), ZERO)
        problem = ""
        if invoice.subtotal != rounded:
            problem = f"invoiced {invoice.subtotal} but the usage records add up to {rounded}"
        elif usage_sum != invoice.subtotal:
            problem = f"lines add up to {usage_sum}, not the subtotal {invoice.subtotal}"
        elif invoice.total != invoice.subtotal - credit_sum or credit_sum != invoice.credits:
            problem = "total is not subtotal - credits"
        elif invoice.usage_cost != raw:
            problem = f"unrounded usage {invoice.usage_cost} differs from the records' {raw}"
        results.append(ReconcileResult(invoice.tenant_id, period_label(start), invoice.currency, invoice.number,
                                       rounded, invoice.subtotal, problem))
    for (tenant_id, currency), (rounded, _raw) in sorted(expected.items()):
        if (tenant_id, currency) not in seen:
            results.append(ReconcileResult(tenant_id, period_label(start), currency, "", rounded, None,
                                           "usage in the period has no invoice"))
    return results
