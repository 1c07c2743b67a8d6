"""In a real browser: sign in, create a tenant, find it in the list, open it."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sign_in(page, base_url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/accounts/signin/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_platform_admin_creates_a_tenant_and_finds_it(live_server, page, screenshot):
    admin = make_user("root@platform.test", platform_admin=True)
    from tests.e2e.mfa import satisfy_mfa_if_asked

    sign_in(page, live_server.url, admin.email)
    satisfy_mfa_if_asked(page, admin)
    page.goto(f"{live_server.url}/tenants/new/")
    page.fill("input[name=id]", "wayne-enterprises")
    page.fill("input[name=name]", "Wayne Enterprises")
    page.select_option("select[name=tier]", "enterprise")
    page.fill("input[name=allowed_models]", "sim-small")
    page.click("button:has-text('Create tenant')")
    page.wait_for_url(f"{live_server.url}/tenants/wayne-enterprises/")
    assert "Wayne Enterprises" in page.inner_text("h1")

    page.goto(f"{live_server.url}/tenants/")
    page.fill("input[name=q]", "wayne")
    page.wait_for_function("() => document.querySelector('#tenant-table').innerText.includes('Wayne Enterprises')")
    page.click("#tenant-table >> text=Wayne Enterprises")
    page.wait_for_url(f"{live_server.url}/tenants/wayne-enterprises/")
    assert page.inner_text("dl.props >> nth=0").count("sim-small") == 1
    path = screenshot("tenant-detail")
    assert path.stat().st_size > 10_000
