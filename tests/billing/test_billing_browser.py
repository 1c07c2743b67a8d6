"""In a real browser: a tenant admin opens the billing page, sees the chargeback totals and the
Plotly charts drawn from the server's figures, and downloads the allocation CSV."""

from __future__ import annotations

import pytest

from tests.conftest import add_member, make_tenant, make_user
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, OUTPUT

from .conftest import add_usage, price, utc

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page():
    """A browser for this test only: Playwright's event loop must not outlive it, or the asyncio
    tests that run after it in the same process could not start their own loop."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15000)
        yield page
        context.close()
        browser.close()


def test_a_tenant_admin_sees_the_chargeback_and_its_charts(live_server, page):
    from django.db import connection

    from apps.core.roles import Role
    from apps.tenants.models import Department
    from tests.e2e.mfa import satisfy_mfa_if_asked
    from tests.e2e.test_console_browser import sign_in

    tenant = make_tenant("initech", name="Initech")
    admin = make_user("admin@initech.test")
    add_member(tenant, admin, Role.TENANT_ADMIN)
    eng = Department.objects.create(tenant=tenant, name="Engineering", code="eng")
    price("m-large", "0.010000", "0.030000", utc(2026, 1, 1))
    try:
        add_usage("initech", created_at=utc(2026, 10, 2), model="m-large", department_id=eng.pk, user_id=admin.pk)
        add_usage("initech", created_at=utc(2026, 10, 3), model="m-large", prompt=2000)

        sign_in(page, live_server.url, admin.email)
        satisfy_mfa_if_asked(page, admin)
        page.goto(f"{live_server.url}/billing/initech/?period=2026-10")
        page.wait_for_function("() => document.body.dataset.slaDrawn")
        for chart in ("chart-department", "chart-project", "chart-model", "chart-user"):
            assert page.locator(f"#{chart} .main-svg").count() >= 1, chart
        assert page.inner_text("#total") == "0.07"
        assert page.inner_text("#net-due") == "0.07"
        pie = "() => document.getElementById('chart-department').data[0].labels"
        assert sorted(page.evaluate(pie)) == ["Engineering (eng)", "Unattributed"]
        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / "billing-chargeback.png"), full_page=True)
        with page.expect_download() as download:
            page.click("text=Export CSV")
        text = open(download.value.path()).read()
        assert text.splitlines()[1].split(",")[11] == "0.06000000"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE gateway_usagerecord")
