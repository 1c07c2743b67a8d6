"""The management API for tenants and their children: CRUD, validation, role limits."""

from __future__ import annotations

import pytest

from apps.tenants.models import Department, Tenant

VALID = {"id": "acme-corp", "name": "Acme Corp", "tier": "enterprise", "isolation_mode": "hybrid",
         "requests_per_minute": 100, "allowed_models": ["sim-small"], "data_residency": "us"}


def test_platform_admin_creates_lists_and_deletes_a_tenant(personas, api_for):
    api = api_for(personas.platform_admin)
    created = api.post("/api/v1/tenants/", VALID, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["id"] == "acme-corp"
    listed = api.get("/api/v1/tenants/?search=acme").json()
    assert [t["id"] for t in listed["results"]] == ["acme-corp"]
    assert api.delete("/api/v1/tenants/acme-corp/").status_code == 204
    assert not Tenant.objects.filter(pk="acme-corp").exists()


@pytest.mark.parametrize("field,value,message", [
    ("requests_per_minute", -1, "greater than or equal to 0"),
    ("max_concurrent", -5, "greater than or equal to 0"),
    ("tier", "platinum", "not a valid choice"),
    ("retention_days", 0, "greater than or equal to 1"),
    ("retention_days", 5000, "less than or equal to 3650"),
    ("id", "Not A Slug!", "lower-case letters"),
    ("id", "api", "reserved"),
    ("isolation_mode", "solo", "not a valid choice"),
    ("data_residency", "mars", "not a valid choice"),
])
def test_bad_tenant_input_is_a_400_naming_the_field(personas, api_for, field, value, message):
    response = api_for(personas.platform_admin).post("/api/v1/tenants/", {**VALID, field: value}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field
    assert message in " ".join(error["fields"][field])


def test_duplicate_tenant_id_is_refused(personas, api_for):
    response = api_for(personas.platform_admin).post("/api/v1/tenants/", {**VALID, "id": "tenant-a"}, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["error"]["fields"]["id"][0]


def test_tenant_admin_cannot_create_tenants_or_raise_their_own_limits(personas, api_for):
    api = api_for(personas.a_admin)
    assert api.post("/api/v1/tenants/", VALID, format="json").status_code == 403
    raised = api.patch("/api/v1/tenants/tenant-a/", {"requests_per_minute": 99999}, format="json")
    assert raised.status_code == 403
    assert "requests_per_minute" in raised.json()["error"]["message"]
    ok = api.patch("/api/v1/tenants/tenant-a/", {"retention_days": 30, "name": "A Renamed"}, format="json")
    assert ok.status_code == 200, ok.json()
    assert Tenant.objects.get(pk="tenant-a").retention_days == 30


def test_tenant_admin_sees_only_their_tenant(personas, api_for):
    listed = api_for(personas.a_admin).get("/api/v1/tenants/").json()
    assert [t["id"] for t in listed["results"]] == ["tenant-a"]
    assert api_for(personas.a_admin).get("/api/v1/tenants/tenant-b/").status_code == 404


def test_departments_projects_and_members_round_trip(personas, api_for):
    api = api_for(personas.a_admin)
    dept = api.post("/api/v1/tenants/tenant-a/departments/", {"name": "Engineering", "code": "eng"}, format="json")
    assert dept.status_code == 201, dept.json()
    dup = api.post("/api/v1/tenants/tenant-a/departments/", {"name": "Eng 2", "code": "eng"}, format="json")
    assert dup.status_code == 400 and "code" in dup.json()["error"]["fields"]
    project = api.post("/api/v1/tenants/tenant-a/projects/",
                       {"name": "Bot", "code": "bot", "department": dept.json()["id"]}, format="json")
    assert project.status_code == 201, project.json()
    member = api.post("/api/v1/tenants/tenant-a/memberships/",
                      {"email": "new@a.test", "role": "member", "password": "a-long-enough-passphrase"}, format="json")
    assert member.status_code == 201, member.json()
    again = api.post("/api/v1/tenants/tenant-a/memberships/", {"email": "new@a.test", "role": "member"}, format="json")
    assert again.status_code == 400 and "already a member" in again.json()["error"]["fields"]["email"][0]
    weak = api.post("/api/v1/tenants/tenant-a/memberships/", {"email": "weak@a.test", "role": "member", "password": "123"}, format="json")
    assert weak.status_code == 400 and "password" in weak.json()["error"]["fields"]
    bad_role = api.post("/api/v1/tenants/tenant-a/memberships/", {"email": "x@a.test", "role": "owner"}, format="json")
    assert bad_role.status_code == 400 and "role" in bad_role.json()["error"]["fields"]


def test_a_project_cannot_use_another_tenants_department(personas, api_for):
    other = Department.objects.create(tenant=personas.tenant_b, name="B eng", code="eng")
    response = api_for(personas.a_admin).post("/api/v1/tenants/tenant-a/projects/",
                                              {"name": "X", "code": "x", "department": other.pk}, format="json")
    assert response.status_code == 400
    assert "department" in response.json()["error"]["fields"]


def test_malformed_json_is_a_400_not_a_500(personas, api_for):
    api = api_for(personas.platform_admin)
    response = api.generic("POST", "/api/v1/tenants/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unauthenticated_api_call_is_a_401_or_403_in_the_error_shape(db, client):
    response = client.get("/api/v1/tenants/")
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_openapi_schema_and_docs_are_served(personas, client_for):
    client = client_for(personas.platform_admin)
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/v1/tenants/" in schema.json()["paths"]
    assert client.get("/api/docs/").status_code == 200
