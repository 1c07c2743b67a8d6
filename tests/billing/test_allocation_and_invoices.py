"""Allocation sums, mid-month price changes, invoices (numbering, immutability, credit notes) and
reconciliation, against real Postgres with the real partitioned usage table."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction

from apps.billing import selectors, services
from apps.billing.models import Invoice, InvoiceKind
from apps.billing.money import to_cents

from .conftest import add_usage, price, utc

pytestmark = pytest.mark.django_db


def spread_usage(org, *, n=120, seed=7):
    """n records in October 2026 over departments, projects, users and keys, some unattributed."""
    rng = random.Random(seed)
    p = org["personas"]
    users = [p.a_admin.pk, p.a_member.pk, None]
    depts = [org["eng"].pk, org["ops"].pk, None]
    projects = [org["search"].pk, org["infra"].pk, None]
    total = Decimal("0")
    for i in range(n):
        cost = add_usage(
            "tenant-a", created_at=utc(2026, 10, 1 + i % 30, i % 24, 7), model=rng.choice(["m-large", "m-small"]),
            prompt=rng.randint(1, 5000), completion=rng.randint(0, 3000), department_id=rng.choice(depts),
            project_id=rng.choice(projects), user_id=rng.choice(users))
        total += cost
    return total


@pytest.fixture
def priced(db):
    price("m-large", "0.010000", "0.030000", utc(2026, 1, 1))
    price("m-small", "0.000150", "0.000600", utc(2026, 1, 1))


def test_departments_projects_users_models_and_keys_each_add_up_to_the_tenant_total(org, priced):
    total = spread_usage(org)
    alloc = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    assert alloc.cost == total
    for dim in selectors.DIMENSIONS:
        assert sum(row.cost for row in alloc.by[dim]) == total, dim
        assert sum(row.requests for row in alloc.by[dim]) == alloc.requests == 120
    labels = {row.label for row in alloc.by["department"]}
    assert "Unattributed" in labels and "Engineering (eng)" in labels


def test_unattributed_usage_is_shown_as_its_own_row_not_hidden(org, priced):
    add_usage("tenant-a", created_at=utc(2026, 10, 3), model="m-large", department_id=None)
    add_usage("tenant-a", created_at=utc(2026, 10, 3), model="m-large", department_id=org["eng"].pk)
    alloc = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    rows = {row.label: row for row in alloc.by["department"]}
    assert rows["Unattributed"].unattributed and rows["Unattributed"].cost == Decimal("0.02500000")


def test_another_tenants_usage_never_enters_the_allocation(org, priced):
    add_usage("tenant-a", created_at=utc(2026, 10, 3), model="m-large")
    add_usage("tenant-b", created_at=utc(2026, 10, 3), model="m-large", prompt=9999)
    alloc = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    assert alloc.requests == 1 and alloc.cost == Decimal("0.02500000")


def test_a_price_change_mid_month_prices_each_request_by_the_price_in_force_at_its_moment(org):
    price("m-large", "0.010000", "0.030000", utc(2026, 1, 1))
    price("m-large", "0.020000", "0.060000", utc(2026, 10, 16))
    before = add_usage("tenant-a", created_at=utc(2026, 10, 15, 23, 59, 59), model="m-large")
    after = add_usage("tenant-a", created_at=utc(2026, 10, 16, 0, 0, 0), model="m-large")
    assert before == Decimal("0.02500000") and after == Decimal("0.05000000")
    [invoice] = services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    assert invoice.usage_cost == Decimal("0.07500000")
    assert invoice.subtotal == Decimal("0.08")  # 0.075 rounded once, half up


def test_a_price_change_is_never_retroactive(personas):
    from datetime import UTC, datetime, timedelta

    services.set_price(actor=personas.platform_admin, model="m-x", input_per_1k=Decimal("1"), output_per_1k=Decimal("2"),
                       effective_from=datetime.now(UTC) - timedelta(days=30))
    with pytest.raises(ValidationError) as info:
        services.set_price(actor=personas.platform_admin, model="m-x", input_per_1k=Decimal("3"),
                           output_per_1k=Decimal("4"), effective_from=datetime.now(UTC) - timedelta(days=1))
    assert "retroactively" in str(info.value)


def test_an_invoice_has_lines_by_model_and_department_and_its_totals_reconcile_to_the_cent(org, priced):
    spread_usage(org, n=300)
    [invoice] = services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    lines = list(invoice.lines.all())
    assert {(line.model, line.department_id) for line in lines} <= {
        (m, d) for m in ("m-large", "m-small") for d in (org["eng"].pk, org["ops"].pk, None)}
    assert invoice.subtotal == sum(line.amount for line in lines)
    assert invoice.total == invoice.subtotal - invoice.credits
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(cost) FROM gateway_usagerecord WHERE tenant_id = 'tenant-a' AND created_at >= %s "
                       "AND created_at < %s", [utc(2026, 10, 1), utc(2026, 11, 1)])
        raw = cursor.fetchone()[0]
    assert invoice.usage_cost == raw
    # Rounding happens once per line: the subtotal is within half a cent per line of the raw total.
    assert abs(invoice.subtotal - raw) <= Decimal("0.005") * len(lines)
    assert all(result.ok for result in services.reconcile(period_start=utc(2026, 10, 1)))


def test_invoice_numbers_are_per_year_and_gap_free_and_the_run_is_idempotent(org, priced, personas):
    add_usage("tenant-a", created_at=utc(2026, 10, 5), model="m-large")
    add_usage("tenant-b", created_at=utc(2026, 10, 5), model="m-small")
    first = services.run_monthly_invoices(now=utc(2026, 11, 1, 2))
    again = services.run_monthly_invoices(now=utc(2026, 11, 1, 3))
    assert first["invoices"] == 2 and again["invoices"] == 2
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == ["SY-2026-000001", "SY-2026-000002"]


def test_an_issued_invoice_cannot_be_changed_or_deleted_even_with_raw_sql(org, priced):
    add_usage("tenant-a", created_at=utc(2026, 10, 5), model="m-large")
    [invoice] = services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    invoice.total = Decimal("0.00")
    with pytest.raises(ValidationError):
        invoice.save()
    with pytest.raises(ValidationError):
        invoice.delete()
    line = invoice.lines.first()
    with pytest.raises(ValidationError):
        line.save()
    from django.db import DatabaseError

    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE billing_invoice SET total = 0 WHERE id = %s", [invoice.pk])
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("0"))
    invoice.refresh_from_db()
    assert invoice.total == Decimal("0.03")


def test_a_correction_is_a_credit_note_that_references_the_invoice(org, priced, personas):
    for day in range(1, 21):
        add_usage("tenant-a", created_at=utc(2026, 10, day), model="m-large")
    [invoice] = services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    note = services.issue_credit_note(actor=personas.a_admin, invoice=invoice, amount=Decimal("0.10"),
                                      reason="Outage goodwill")
    assert note.kind == InvoiceKind.CREDIT_NOTE and note.corrects == invoice and note.total == Decimal("-0.10")
    assert note.number == "SY-2026-000002"
    with pytest.raises(ValidationError, match="left to credit"):
        services.issue_credit_note(actor=personas.a_admin, invoice=invoice, amount=Decimal("1.00"), reason="too much")


def test_a_period_that_has_not_ended_cannot_be_invoiced(org, priced):
    with pytest.raises(ValidationError, match="not ended"):
        services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 11, 1), now=utc(2026, 11, 20))


def test_sla_credits_of_the_period_reduce_the_net_due(org, priced, monkeypatch):
    import apps.sla.services as sla_services
    from apps.sla.models import SlaCredit

    add_usage("tenant-a", created_at=utc(2026, 10, 5), model="m-large", prompt=100_000, completion=0)  # 1.00
    tenant = org["personas"].tenant_a
    credit = SlaCredit(tenant=tenant, policy=sla_services.policy_for(tenant), period_start=utc(2026, 10, 1),
                       period_end=utc(2026, 11, 1), credit_percent=Decimal("10"), expected=Decimal("99.9"),
                       actual=Decimal("99.5"), computed_at=utc(2026, 11, 1))
    # The SLA app computes credits from its rollups; here the period's credit is given directly.
    monkeypatch.setattr(sla_services, "credits_for_period", lambda *, tenant_id, start, end: [credit])
    report = selectors.chargeback(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    [invoice] = services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    assert report["subtotal"] == Decimal("1.00") and report["credit_total"] == Decimal("0.10")
    assert report["net_due"] == invoice.total == Decimal("0.90")
    assert invoice.lines.get(kind="credit").amount == Decimal("-0.10")


def test_reconcile_billing_command_reports_a_late_record_as_a_mismatch(org, priced, capsys):
    add_usage("tenant-a", created_at=utc(2026, 10, 5), model="m-large")
    services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    call_command("reconcile_billing", "--period", "2026-10")
    assert "1 invoices, 0 problems" in capsys.readouterr().out
    add_usage("tenant-a", created_at=utc(2026, 10, 31, 23, 59), model="m-large")
    with pytest.raises(SystemExit):
        call_command("reconcile_billing", "--period", "2026-10")
    assert "usage records add up to 0.05" in capsys.readouterr().out


def test_rounding_is_half_up_once_per_line():
    assert to_cents(Decimal("0.005")) == Decimal("0.01")
    assert to_cents(Decimal("0.00499999")) == Decimal("0.00")


def test_rollups_and_raw_records_give_the_same_allocation_to_the_last_decimal(org, priced):
    spread_usage(org, n=200)
    raw = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    summary = services.rollup_recent(now=utc(2026, 10, 20, 12))  # days before Oct 20 rolled up, the rest raw
    assert summary["until"].startswith("2026-10-20")
    mixed = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    assert mixed.as_dict() == raw.as_dict()
    services.rollup_recent(now=utc(2026, 11, 2))
    rolled = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    assert rolled.as_dict() == raw.as_dict()


def test_a_late_record_for_yesterday_is_picked_up_by_the_next_rollup_run(org, priced):
    add_usage("tenant-a", created_at=utc(2026, 10, 9, 12), model="m-large")
    services.rollup_recent(now=utc(2026, 10, 10, 0, 5))
    add_usage("tenant-a", created_at=utc(2026, 10, 9, 23, 59, 59), model="m-large")  # lands after the run
    before = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    assert before.requests == 1  # the rolled-up day does not see it yet
    services.rollup_recent(now=utc(2026, 10, 10, 0, 10))
    after = selectors.allocation(tenant_id="tenant-a", start=utc(2026, 10, 1), end=utc(2026, 11, 1))
    assert after.requests == 2 and after.cost == Decimal("0.05000000")


def test_the_invoice_run_rebuilds_the_months_rollups_so_a_late_record_is_invoiced(org, priced):
    add_usage("tenant-a", created_at=utc(2026, 10, 5), model="m-large")
    services.rollup_recent(now=utc(2026, 11, 1, 0, 5))
    add_usage("tenant-a", created_at=utc(2026, 10, 31, 23, 59, 59), model="m-large")
    services.run_monthly_invoices(now=utc(2026, 11, 1, 1, 30))
    invoice = Invoice.objects.get(tenant_id="tenant-a")
    assert invoice.usage_cost == Decimal("0.05000000") and invoice.requests == 2
    assert all(result.ok for result in services.reconcile(period_start=utc(2026, 10, 1)))


@pytest.mark.django_db(transaction=True)
def test_invoices_issued_concurrently_get_gap_free_unique_numbers(priced):
    import threading

    from django.db import connection as conn

    from tests.conftest import make_tenant

    # The usage table is not flushed between transactional tests: empty it whatever happens.
    try:
        tenants = [make_tenant(f"conc-{i}").pk for i in range(8)]
        for tenant_id in tenants:
            add_usage(tenant_id, created_at=utc(2026, 10, 7), model="m-small")
        errors = []

        def issue(tenant_id):
            try:
                services.issue_invoices(tenant_id=tenant_id, period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
                services.issue_invoices(tenant_id=tenant_id, period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
            except Exception as exc:  # collected and asserted below
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=issue, args=(t,)) for t in tenants]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        numbers = sorted(Invoice.objects.values_list("number", flat=True))
        assert numbers == [f"SY-2026-{n:06d}" for n in range(1, 9)]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE gateway_usagerecord")
