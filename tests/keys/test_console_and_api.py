"""The keys console page and API: who sees and rotates what, and the audit event of a rotation."""

import pytest

from apps.keys import services
from apps.keys.models import DataKey, KeyState

from .sample_models import SampleSecret

pytestmark = pytest.mark.django_db

API = "/api/v1/tenants/{}/keys/"


@pytest.fixture
def keyed(personas):
    services.ensure_tenant_keyring(tenant_id="tenant-a")
    services.ensure_tenant_keyring(tenant_id="tenant-b")
    SampleSecret.objects.create(tenant_id="tenant-a", secret="a secret")
    return personas


def test_the_api_lists_versions_with_rows_protected_and_no_key_material(keyed, api_for):
    response = api_for(keyed.a_admin).get(API.format("tenant-a"))
    assert response.status_code == 200
    versions = response.json()
    assert versions == [{**versions[0], "version": 1, "state": "primary", "rows_protected": 1, "age_days": 0}]
    assert "wrapped_key" not in response.content.decode()
    detail = api_for(keyed.a_admin).get(API.format("tenant-a") + "1/")
    assert detail.status_code == 200 and detail.json()["rows_protected"] == 1


def test_the_api_shows_the_reencryption_job_after_a_rotation(keyed, api_for):
    client = api_for(keyed.a_auditor)
    assert client.get(API.format("tenant-a") + "reencryption/").status_code == 204
    services.rotate_tenant_key(tenant_id="tenant-a", enqueue_reencrypt=False)
    services.reencrypt_tenant(tenant_id="tenant-a")
    job = client.get(API.format("tenant-a") + "reencryption/").json()
    assert job["status"] == "completed" and job["target_version"] == 2 and job["rows_reencrypted"] == 1


def test_an_auditor_may_list_but_not_rotate(keyed, api_for):
    client = api_for(keyed.a_auditor)
    assert client.get(API.format("tenant-a")).status_code == 200
    assert client.post(API.format("tenant-a") + "rotate/", {}, format="json").status_code == 403


@pytest.mark.parametrize("persona", ["a_member", "a_viewer"])
def test_members_and_viewers_may_not_see_key_versions(keyed, api_for, persona):
    assert api_for(getattr(keyed, persona)).get(API.format("tenant-a")).status_code == 403


def test_outsider_gets_404_for_another_tenants_keys(keyed, api_for):
    client = api_for(keyed.b_admin)
    assert client.get(API.format("tenant-a")).status_code == 404
    assert client.get(API.format("tenant-a") + "1/").status_code == 404
    assert client.get(API.format("tenant-a") + "reencryption/").status_code == 404
    assert client.post(API.format("tenant-a") + "rotate/", {}, format="json").status_code == 404
    assert DataKey.objects.get(tenant_id="tenant-a", state=KeyState.PRIMARY).version == 1


def test_a_tenant_admin_rotates_through_the_api_and_it_is_audited(keyed, api_for):
    from apps.audit.models import AuditEvent

    response = api_for(keyed.a_admin).post(API.format("tenant-a") + "rotate/", {"reason": "staff change"}, format="json")
    assert response.status_code == 201
    assert response.json()["version"] == 2 and response.json()["state"] == "primary"
    event = AuditEvent.objects.get(action="key.rotate", tenant_id="tenant-a")
    assert event.actor_label == keyed.a_admin.email
    assert event.metadata["from_version"] == 1 and event.metadata["to_version"] == 2
    assert event.metadata["reason"] == "staff change"


def test_a_too_long_reason_is_a_400_with_the_field_named(keyed, api_for):
    response = api_for(keyed.a_admin).post(API.format("tenant-a") + "rotate/", {"reason": "x" * 101}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]


def test_rotating_destroyed_keys_is_a_409(keyed, api_for):
    services.destroy_tenant_keys(tenant_id="tenant-a")
    response = api_for(keyed.platform_admin).post(API.format("tenant-a") + "rotate/", {}, format="json")
    assert response.status_code == 409
    assert "destroyed" in response.json()["error"]["message"]


def test_the_console_page_shows_versions_age_and_rows(keyed, client_for):
    services.rotate_tenant_key(tenant_id="tenant-a", enqueue_reencrypt=False)
    page = client_for(keyed.a_admin).get("/keys/tenant-a/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "v2" in html and "v1" in html and "Decrypt only" in html and "Rotate now" in html


def test_the_rotate_button_rotates_and_redirects_back(keyed, client_for):
    response = client_for(keyed.a_admin).post("/keys/tenant-a/rotate/", {"reason": "button"})
    assert response.status_code == 302 and response["Location"] == "/keys/tenant-a/"
    assert DataKey.objects.get(tenant_id="tenant-a", state=KeyState.PRIMARY).version == 2


def test_the_rotate_button_answers_htmx_with_the_table_fragment(keyed, client_for):
    response = client_for(keyed.a_admin).post("/keys/tenant-a/rotate/", {"reason": "htmx"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "v2" in html and "now primary" in html


def test_console_roles_auditor_reads_member_is_forbidden_outsider_gets_404(keyed, client_for):
    assert client_for(keyed.a_auditor).get("/keys/tenant-a/").status_code == 200
    assert "Rotate now" not in client_for(keyed.a_auditor).get("/keys/tenant-a/").content.decode()
    assert client_for(keyed.a_auditor).post("/keys/tenant-a/rotate/", {}).status_code == 403
    assert client_for(keyed.a_member).get("/keys/tenant-a/").status_code == 403
    assert client_for(keyed.b_admin).get("/keys/tenant-a/").status_code == 404
    assert client_for(keyed.b_admin).post("/keys/tenant-a/rotate/", {}).status_code == 404


def test_only_platform_admins_see_the_platform_keyring(keyed, client_for):
    services.ensure_tenant_keyring(tenant_id=None)
    assert client_for(keyed.platform_admin).get("/keys/platform/").status_code == 200
    assert client_for(keyed.a_admin).get("/keys/platform/").status_code == 404
    index = client_for(keyed.a_admin).get("/keys/").content.decode()
    assert "tenant-a" in index and "tenant-b" not in index and "platform" not in index.split("<main")[1]


def test_a_rotate_form_with_a_bad_reason_is_a_400(keyed, client_for):
    response = client_for(keyed.a_admin).post("/keys/tenant-a/rotate/", {"reason": "x" * 200})
    assert response.status_code == 400
    assert "at most 100 characters" in response.content.decode()
