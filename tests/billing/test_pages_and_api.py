"""Billing console pages and API: who sees what (404 for another tenant, 403 without the role),
field-level 400s, the CSV and PDF exports, and the same numbers in page, API and CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from apps.billing import services
from apps.billing.models import Budget

from .conftest import add_usage, price, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage(org):
    price("m-large", "0.010000", "0.030000", utc(2026, 1, 1))
    add_usage("tenant-a", created_at=utc(2026, 10, 2), model="m-large", department_id=org["eng"].pk,
              user_id=org["personas"].a_member.pk)
    add_usage("tenant-a", created_at=utc(2026, 10, 3), model="m-large", prompt=2000)
    add_usage("tenant-a", created_at=utc(2026, 10, 4), model="never-priced")
    return org


def test_the_allocation_api_page_and_csv_show_the_same_total(usage, api_for, client_for, personas):
    api = api_for(personas.a_admin)
    body = api.get("/api/v1/tenants/tenant-a/billing/allocation?period=2026-10").json()
    assert body["cost"] == "0.06000000" and body["amount"] == "0.06" and body["unpriced_requests"] == 1
    departments = {row["label"]: row for row in body["by"]["department"]}
    assert departments["Unattributed"]["unattributed"] and departments["Engineering (eng)"]["cost"] == "0.02500000"
    page = client_for(personas.a_admin).get("/billing/tenant-a/?period=2026-10")
    assert page.status_code == 200
    html = page.content.decode()
    # The headline follows the invoice rule (each model-and-department line rounded once): 0.03 + 0.04.
    assert 'id="total">0.07<' in html and 'id="exact-total">0.06000000<' in html
    assert "Unattributed" in html and "sla-figures" in html
    csv_response = api.get("/api/v1/tenants/tenant-a/billing/allocation?period=2026-10&format=csv")
    assert csv_response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.content.decode())))
    assert rows[0]["dimension"] == "total" and rows[0]["cost"] == "0.06000000"
    page_csv = client_for(personas.a_admin).get("/billing/tenant-a/?period=2026-10&format=csv")
    assert page_csv.content == csv_response.content


def test_the_chargeback_api_gives_total_breakdowns_top_users_credits_and_net_due(usage, api_for, personas):
    body = api_for(personas.a_admin).get("/api/v1/tenants/tenant-a/billing/chargeback?period=2026-10").json()
    assert body["subtotal"] == "0.07" and body["net_due"] == "0.07"  # two lines: 0.025 -> 0.03, 0.035 -> 0.04
    assert [u["label"] for u in body["top_users"]] == ["member@a.test"]
    assert {"by_department", "by_project", "sla_credits", "credit_total"} <= set(body)


def test_an_outsider_gets_404_and_a_member_without_the_billing_role_gets_403(usage, api_for, client_for, personas):
    assert api_for(personas.b_admin).get("/api/v1/tenants/tenant-a/billing/allocation").status_code == 404
    assert api_for(personas.b_admin).get("/api/v1/tenants/tenant-a/budgets/").status_code == 404
    assert client_for(personas.b_admin).get("/billing/tenant-a/").status_code == 404
    assert api_for(personas.a_member).get("/api/v1/tenants/tenant-a/billing/chargeback").status_code == 403
    assert api_for(personas.a_viewer).get("/api/v1/tenants/tenant-a/invoices/").status_code == 403
    assert client_for(personas.a_member).get("/billing/tenant-a/budgets/").status_code == 403


def test_a_bad_period_is_a_400_with_a_field_message(usage, api_for, personas):
    response = api_for(personas.a_admin).get("/api/v1/tenants/tenant-a/billing/allocation?period=2026-13")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["period"] == ["Give the period as YYYY-MM, e.g. 2026-10."]
    response = api_for(personas.a_admin).get("/api/v1/tenants/tenant-a/billing/allocation?start=2026-10-05&end=2026-10-01")
    assert response.json()["error"]["fields"]["end"] == ["Must be after start."]


def test_a_tenant_admin_manages_budgets_through_the_api_and_another_tenants_department_is_refused(
        usage, api_for, personas):
    from apps.tenants.models import Department

    api = api_for(personas.a_admin)
    created = api.post("/api/v1/tenants/tenant-a/budgets/", {"scope": "department", "department": usage["eng"].pk,
                                                            "amount": "25.00", "hard_limit": True}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["spent"] == "0"
    other = Department.objects.create(tenant=personas.tenant_b, name="B", code="b")
    refused = api.post("/api/v1/tenants/tenant-a/budgets/", {"scope": "department", "department": other.pk,
                                                            "amount": "5"}, format="json")
    assert refused.status_code == 400 and "department" in refused.json()["error"]["fields"]
    negative = api.post("/api/v1/tenants/tenant-a/budgets/", {"scope": "tenant", "amount": "-1"}, format="json")
    assert negative.status_code == 400 and "amount" in negative.json()["error"]["fields"]
    budget_id = created.json()["id"]
    changed = api.patch(f"/api/v1/tenants/tenant-a/budgets/{budget_id}/", {"amount": "30"}, format="json")
    assert changed.status_code == 200 and changed.json()["amount"] == "30.00"
    assert api_for(personas.a_viewer).patch(f"/api/v1/tenants/tenant-a/budgets/{budget_id}/", {"amount": "1"},
                                            format="json").status_code == 403
    assert api.delete(f"/api/v1/tenants/tenant-a/budgets/{budget_id}/").status_code == 204
    assert not Budget.objects.exists()


def test_a_platform_admin_issues_an_invoice_on_demand_and_it_downloads_as_pdf_and_csv(usage, api_for, personas):
    admin = api_for(personas.platform_admin)
    assert api_for(personas.a_admin).post("/api/v1/tenants/tenant-a/invoices/issue/", {"period": "2026-10"},
                                          format="json").status_code == 403
    issued = admin.post("/api/v1/tenants/tenant-a/invoices/issue/", {"period": "2026-10"}, format="json")
    assert issued.status_code == 201
    [invoice] = issued.json()
    assert invoice["number"].startswith("SY-") and invoice["total"] == "0.07" and len(invoice["lines"]) == 2
    again = admin.post("/api/v1/tenants/tenant-a/invoices/issue/", {"period": "2026-10"}, format="json")
    assert [i["number"] for i in again.json()] == [invoice["number"]]
    bad = admin.post("/api/v1/tenants/tenant-a/invoices/issue/", {"period": "October"}, format="json")
    assert bad.status_code == 400 and "period" in bad.json()["error"]["fields"]
    reader = api_for(personas.a_admin)
    pdf = reader.get(f"/api/v1/tenants/tenant-a/invoices/{invoice['id']}/pdf/")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    text = reader.get(f"/api/v1/tenants/tenant-a/invoices/{invoice['id']}/csv/").content.decode()
    assert "total,0.07" in text
    assert api_for(personas.b_admin).get(f"/api/v1/tenants/tenant-a/invoices/{invoice['id']}/").status_code == 404


def test_prices_are_added_by_platform_admins_and_unpriced_models_are_listed(usage, api_for, client_for, personas):
    assert api_for(personas.a_admin).post("/api/v1/billing/prices/", {}, format="json").status_code == 403
    admin = api_for(personas.platform_admin)
    bad = admin.post("/api/v1/billing/prices/", {"model": "m-new", "input_per_1k": "-1", "output_per_1k": "1"},
                     format="json")
    assert bad.status_code == 400 and "input_per_1k" in bad.json()["error"]["fields"]
    unpriced = admin.get("/api/v1/billing/prices/unpriced/").json()
    assert [row["model"] for row in unpriced] == ["never-priced"]
    ok = admin.post("/api/v1/billing/prices/", {"model": "never-priced", "input_per_1k": "0.1",
                                                "output_per_1k": "0.2", "currency": "usd"}, format="json")
    assert ok.status_code == 201 and ok.json()["currency"] == "USD"
    page = client_for(personas.platform_admin).get("/billing/prices/")
    assert page.status_code == 200 and "never-priced" in page.content.decode()
    response = client_for(personas.platform_admin).post("/billing/prices/", {
        "model": "m-large", "input_per_1k": "1", "output_per_1k": "1", "currency": "USD",
        "effective_from": "2026-01-02 00:00"})
    assert response.status_code == 200 and "never retroactively" in response.content.decode()


def test_console_pages_render_for_a_tenant_admin(usage, client_for, personas):
    services.save_budget(actor=personas.a_admin, tenant=personas.tenant_a, scope="tenant", amount=Decimal("10"))
    [invoice] = services.issue_invoices(tenant_id="tenant-a", period_start=utc(2026, 10, 1), now=utc(2026, 11, 2))
    client = client_for(personas.a_admin)
    assert client.get("/billing/").status_code == 302  # one tenant: straight to it
    for url in ("/billing/tenant-a/budgets/", "/billing/tenant-a/invoices/", f"/billing/tenant-a/invoices/{invoice.pk}/",
                f"/billing/tenant-a/invoices/{invoice.pk}/pdf/", f"/billing/tenant-a/invoices/{invoice.pk}/csv/"):
        assert client.get(url).status_code == 200, url
    response = client.post("/billing/tenant-a/budgets/", {"scope": "project", "amount": "5", "currency": "USD",
                                                          "period": "month"})
    assert response.status_code == 200 and "Choose a project of this tenant." in response.content.decode()
