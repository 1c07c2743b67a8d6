"""Console pages for tenants: list with search and pagination, forms with field errors."""

from __future__ import annotations

from apps.tenants.models import Membership, ResourcePool, Tenant
from tests.conftest import make_tenant


def test_tenant_list_searches_and_paginates(personas, client_for):
    for i in range(30):
        make_tenant(f"extra-{i:02d}", name=f"Extra {i:02d}")
    client = client_for(personas.platform_admin)
    page = client.get("/tenants/?q=extra")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Extra 00" in body and "Page 1 of 2" in body and "Tenant A" not in body
    second = client.get("/tenants/?q=extra&page=2").content.decode()
    assert "Extra 29" in second


def test_htmx_request_gets_only_the_table(personas, client_for):
    response = client_for(personas.platform_admin).get("/tenants/?q=tenant", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<table>" in body and "<html" not in body


def test_tenant_admin_lists_only_their_tenant(personas, client_for):
    body = client_for(personas.a_admin).get("/tenants/").content.decode()
    assert "Tenant A" in body and "Tenant B" not in body


def test_create_tenant_form_shows_field_errors(personas, client_for):
    client = client_for(personas.platform_admin)
    response = client.post("/tenants/new/", {"id": "Bad Id", "name": "", "tier": "gold", "requests_per_minute": "-3",
                                             "retention_days": "0"})
    assert response.status_code == 400
    form = response.context["form"]
    for field in ("id", "name", "tier", "requests_per_minute", "retention_days"):
        assert field in form.errors, field
    assert not Tenant.objects.filter(name="").exists()


def test_create_tenant_form_creates_and_redirects(personas, client_for):
    client = client_for(personas.platform_admin)
    data = {"id": "initech", "name": "Initech", "tier": "pro", "status": "active", "isolation_mode": "shared",
            "requests_per_minute": 60, "requests_per_day": 1000, "tokens_per_month": 100000, "max_concurrent": 5,
            "allowed_models": "sim-small, sim-large", "data_residency": "eu", "encrypt_content": "on",
            "retention_days": 30, "key_rotation_days": 90, "redis_outage_mode": "fail_closed"}
    response = client.post("/tenants/new/", data)
    assert response.status_code == 302, response.context["form"].errors if response.context else response
    tenant = Tenant.objects.get(pk="initech")
    assert tenant.allowed_models == ["sim-small", "sim-large"]
    assert client.get("/tenants/initech/").status_code == 200


def test_members_form_adds_a_member_and_rejects_bad_email(personas, client_for):
    client = client_for(personas.a_admin)
    bad = client.post("/tenants/tenant-a/members/", {"email": "not-an-email", "role": "member"})
    assert bad.status_code == 400 and "email" in bad.context["form"].errors
    ok = client.post("/tenants/tenant-a/members/", {"email": "carol@a.test", "role": "viewer"})
    assert ok.status_code == 302
    assert Membership.objects.get(tenant=personas.tenant_a, user__email="carol@a.test").role == "viewer"


def test_allocation_form_reports_what_is_left(personas, client_for):
    pool = ResourcePool.objects.create(name="small", cpu_millicores=100, memory_mib=100, storage_gib=1, bandwidth_mbps=1)
    response = client_for(personas.a_admin).post("/tenants/tenant-a/allocations/", {
        "pool": pool.pk, "cpu_millicores": 200, "memory_mib": 0, "storage_gib": 0, "bandwidth_mbps": 0})
    assert response.status_code == 400
    assert "only 100 millicores free" in response.content.decode()


def test_viewer_sees_pages_without_edit_controls(personas, client_for):
    body = client_for(personas.a_viewer).get("/tenants/tenant-a/departments/").content.decode()
    assert "Add department" not in body


def test_every_navigation_entry_opens_a_page(personas, client_for):
    from django.urls import reverse

    from apps.core.context_processors import NAV

    client = client_for(personas.a_admin)
    for _key, label, url_name in NAV:
        response = client.get(reverse(url_name), follow=True)
        assert response.status_code == 200, (label, response.status_code)


def test_signed_out_user_is_sent_to_sign_in(db, client):
    response = client.get("/tenants/")
    assert response.status_code == 302 and "/accounts/signin/" in response["Location"]


def test_admin_edits_and_deletes_a_department_and_a_project(personas, client_for):
    from apps.tenants.models import Department, Project

    client = client_for(personas.a_admin)
    assert client.post("/tenants/tenant-a/departments/", {"name": "Eng", "code": "eng"}).status_code == 302
    dept = Department.objects.get(tenant=personas.tenant_a, code="eng")
    assert client.post(f"/tenants/tenant-a/departments/{dept.pk}/", {"name": "Engineering", "code": "eng"}).status_code == 302
    dept.refresh_from_db()
    assert dept.name == "Engineering"
    assert client.post("/tenants/tenant-a/projects/", {"name": "Bot", "code": "bot", "department": dept.pk}).status_code == 302
    project = Project.objects.get(tenant=personas.tenant_a, code="bot")
    duplicate = client.post("/tenants/tenant-a/projects/", {"name": "Bot 2", "code": "bot"})
    assert duplicate.status_code == 400 and "code" in duplicate.context["form"].errors
    assert client.post(f"/tenants/tenant-a/projects/{project.pk}/", {"delete": "1"}).status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()
    assert client.post(f"/tenants/tenant-a/departments/{dept.pk}/", {"delete": "1"}).status_code == 302
    assert not Department.objects.filter(pk=dept.pk).exists()
