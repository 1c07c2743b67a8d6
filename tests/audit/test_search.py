"""Audit search, details, exports and compliance reports in the API and the console, with their permissions."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import record_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(personas):
    a = personas.tenant_a.pk
    events = {
        "signin": record_event(action="auth.sign_in", tenant_id=a, actor=personas.a_admin, resource_type="user", resource_id=str(personas.a_admin.pk)),
        "failed": record_event(action="auth.sign_in_failed", tenant_id=a, actor=personas.a_member, result="failure", metadata={"reason": "bad-password"}),
        "member": record_event(action="tenant.member_added", tenant_id=a, actor=personas.a_admin, resource_type="membership", resource_id="42",
                               metadata={"role": "viewer", "email": "newbie@a.test"}, details={"note": "onboarding ticket 7781"}),
        "b": record_event(action="tenant.member_added", tenant_id=personas.tenant_b.pk, actor=personas.b_admin, details={"secret": "b-only"}),
        "platform": record_event(action="region.failover", tenant_id=None, details={"why": "platform-only"}),
    }
    return events


def ids(response) -> list[str]:
    return [row["id"] for row in response.json()["results"]]


def test_auditor_sees_only_their_tenants_events_newest_first(personas, api_for, trail):
    response = api_for(personas.a_auditor).get("/api/v1/audit/events/")
    assert response.status_code == 200
    assert ids(response) == [str(trail[k].pk) for k in ("member", "failed", "signin")]


def test_platform_admin_sees_every_tenant_and_platform_events(personas, api_for, trail):
    response = api_for(personas.platform_admin).get("/api/v1/audit/events/")
    assert len(ids(response)) == 5
    platform = api_for(personas.platform_admin).get("/api/v1/audit/events/?tenant=platform")
    assert ids(platform) == [str(trail["platform"].pk)]


def test_filters_narrow_by_user_action_resource_result_dates_and_text(personas, api_for, trail):
    client = api_for(personas.a_admin)
    get = lambda query: ids(client.get("/api/v1/audit/events/?" + query))  # noqa: E731
    assert get(f"user={personas.a_member.email}") == [str(trail["failed"].pk)]
    assert get("action=auth.*") == [str(trail["failed"].pk), str(trail["signin"].pk)]
    assert get("action=auth.sign_in") == [str(trail["signin"].pk)]
    assert get("resource=membership:42") == [str(trail["member"].pk)]
    assert get("result=failure") == [str(trail["failed"].pk)]
    assert get("q=bad-password") == [str(trail["failed"].pk)]
    assert get("q=newbie@a.test") == [str(trail["member"].pk)]
    assert get("q=viewer") == [str(trail["member"].pk)]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert get(f"since={tomorrow}") == []
    assert len(get(f"until={tomorrow}&tenant=tenant-a")) == 3


def test_bad_filters_are_a_400_with_field_messages(personas, api_for, trail):
    response = api_for(personas.a_admin).get("/api/v1/audit/events/?result=maybe&since=yesterday-ish")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"result", "since"}
    response = api_for(personas.a_admin).get("/api/v1/audit/events/?since=2026-02-01&until=2026-01-01")
    assert response.json()["error"]["fields"] == {"until": ["Must be after From."]}


def test_outsider_gets_404_and_member_without_audit_role_gets_403(personas, api_for, trail):
    assert api_for(personas.b_admin).get("/api/v1/audit/events/?tenant=tenant-a").status_code == 404
    assert api_for(personas.b_admin).get(f"/api/v1/audit/events/{trail['member'].pk}/").status_code == 404
    assert api_for(personas.a_member).get("/api/v1/audit/events/?tenant=tenant-a").status_code == 403
    assert api_for(personas.a_viewer).get(f"/api/v1/audit/events/{trail['member'].pk}/").status_code == 403
    assert api_for(personas.a_admin).get(f"/api/v1/audit/events/{trail['platform'].pk}/").status_code == 404
    assert api_for(personas.a_member).get("/api/v1/audit/events/").json()["results"] == []


def test_details_are_encrypted_at_rest_and_decrypted_only_for_auditors(personas, api_for, trail):
    stored = AuditEvent.objects.get(pk=trail["member"].pk)
    assert "onboarding" not in stored.details and stored.details.startswith("sy1:")
    detail = api_for(personas.a_auditor).get(f"/api/v1/audit/events/{trail['member'].pk}/").json()
    assert detail["details"] == {"note": "onboarding ticket 7781"}
    listed = api_for(personas.a_auditor).get("/api/v1/audit/events/").json()["results"]
    assert listed[0]["details"] == {"encrypted": True}
    assert api_for(personas.platform_admin).get(f"/api/v1/audit/events/{trail['platform'].pk}/").json()["details"] == {"why": "platform-only"}


def test_details_of_a_destroyed_tenant_key_read_as_a_clear_error(personas, api_for, trail):
    from apps.keys.services import destroy_tenant_keys

    destroy_tenant_keys(tenant_id=personas.tenant_b.pk)
    detail = api_for(personas.platform_admin).get(f"/api/v1/audit/events/{trail['b'].pk}/").json()
    assert "cannot decrypt" in detail["details"]["_unreadable"]
    assert "b-only" not in json.dumps(detail)


def test_pagination_has_no_total_and_pages_newest_first(personas, api_for):
    for i in range(7):
        record_event(action="page.test", tenant_id="tenant-a", metadata={"i": i})
    client = api_for(personas.a_auditor)
    first = client.get("/api/v1/audit/events/?page_size=3").json()
    assert [r["metadata"]["i"] for r in first["results"]] == [6, 5, 4]
    assert "count" not in first and first["next"]
    last = client.get("/api/v1/audit/events/?page_size=3&page=3").json()
    assert [r["metadata"]["i"] for r in last["results"]] == [0] and last["next"] is None


def test_csv_export_is_the_filtered_result_and_is_itself_audited(personas, api_for, trail):
    response = api_for(personas.a_auditor).get("/api/v1/audit/events/export/?as=csv&action=auth.*")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["id"] for r in rows] == [str(trail["failed"].pk), str(trail["signin"].pk)]
    export = AuditEvent.objects.get(action="audit.export")
    assert export.tenant_id == "tenant-a" and export.actor_label == personas.a_auditor.email
    assert export.metadata["format"] == "csv" and export.metadata["filters"] == {"action": "auth.*"}


def test_json_export_includes_details_only_when_asked(personas, api_for, trail):
    client = api_for(personas.a_admin)
    body = json.loads(b"".join(client.get("/api/v1/audit/events/export/?as=json&details=1&tenant=tenant-a").streaming_content))
    assert {r["id"]: r.get("details") for r in body}[str(trail["member"].pk)] == {"note": "onboarding ticket 7781"}
    plain = json.loads(b"".join(client.get("/api/v1/audit/events/export/?as=json").streaming_content))
    assert all("details" not in r for r in plain)
    assert api_for(personas.a_member).get("/api/v1/audit/events/export/?as=json&tenant=tenant-a").status_code == 403


def test_csv_export_defuses_spreadsheet_formulas(personas, api_for):
    record_event(action="x", tenant_id="tenant-a", resource_type="=HYPERLINK(\"http://evil\")")
    content = b"".join(api_for(personas.a_admin).get("/api/v1/audit/events/export/?as=csv").streaming_content).decode()
    assert "'=HYPERLINK" in content


def test_compliance_report_counts_actions_users_success_and_verifies_the_chain(personas, api_for, trail):
    report = api_for(personas.a_auditor).get("/api/v1/audit/compliance/?tenant=tenant-a").json()
    assert report["total_actions"] == 3
    assert report["unique_users"] == 2
    assert report["success_rate"] == round(2 / 3, 4)
    assert {r["action"]: r["count"] for r in report["by_action"]} == {"auth.sign_in": 1, "auth.sign_in_failed": 1, "tenant.member_added": 1}
    assert report["retention"]["retention_days"] == 90
    assert report["encryption"]["keyring"] == "active" and report["encryption"]["audit_details_encrypted"] == 1
    assert report["chain_verification"]["ok"] is True and report["chain_verification"]["events"] == 3


def test_compliance_report_downloads_as_csv_and_the_download_is_audited(personas, api_for, trail):
    response = api_for(personas.a_admin).get("/api/v1/audit/compliance/?tenant=tenant-a&as=csv&since=2020-01-01")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert "total_actions,3" in response.content.decode()
    assert AuditEvent.objects.filter(action="audit.export", resource_type="compliance_report", tenant_id="tenant-a").exists()


def test_compliance_report_permissions(personas, api_for, trail):
    assert api_for(personas.b_admin).get("/api/v1/audit/compliance/?tenant=tenant-a").status_code == 404
    assert api_for(personas.a_viewer).get("/api/v1/audit/compliance/?tenant=tenant-a").status_code == 403
    assert api_for(personas.a_admin).get("/api/v1/audit/compliance/").status_code == 400
    assert api_for(personas.a_admin).get("/api/v1/audit/compliance/?tenant=platform").status_code == 404


def test_the_signing_public_key_is_published(personas, api_for):
    body = api_for(personas.a_viewer).get("/api/v1/audit/signing-key/").json()
    assert body["algorithm"] == "Ed25519" and len(body["key_id"]) == 16 and "BEGIN PUBLIC KEY" in body["pem"]


# --- Console ---------------------------------------------------------------------------------


def test_console_search_page_lists_events_and_htmx_gets_only_the_table(personas, client_for, trail):
    client = client_for(personas.a_auditor)
    page = client.get("/audit/?action=auth.*")
    assert page.status_code == 200
    html = page.content.decode()
    assert "auth.sign_in_failed" in html and "tenant.member_added" not in html and "<html" in html
    partial = client.get("/audit/?action=auth.*", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and "auth.sign_in_failed" in partial


def test_console_nav_points_to_the_audit_search(personas, client_for, trail):
    assert 'href="/audit/"' in client_for(personas.a_auditor).get("/audit/").content.decode()


def test_console_permissions(personas, client_for, trail):
    assert client_for(personas.a_member).get("/audit/").status_code == 403
    assert client_for(personas.b_admin).get("/audit/?tenant=tenant-a").status_code == 404
    assert client_for(personas.b_admin).get(f"/audit/events/{trail['member'].pk}/").status_code == 404
    assert client_for(personas.a_auditor).get("/audit/?tenant=platform").status_code == 404


def test_console_event_page_shows_decrypted_details_to_auditors(personas, client_for, trail):
    html = client_for(personas.a_auditor).get(f"/audit/events/{trail['member'].pk}/").content.decode()
    assert "onboarding ticket 7781" in html


def test_console_bad_filter_is_a_400_with_the_message(personas, client_for, trail):
    response = client_for(personas.a_admin).get("/audit/?since=not-a-date")
    assert response.status_code == 400 and "Enter a valid date/time" in response.content.decode()


def test_console_exports_are_downloads_and_audited(personas, client_for, trail):
    response = client_for(personas.a_admin).get("/audit/export.csv?tenant=tenant-a")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    # The trail, plus the sign-in of this client (recorded from the auth signal), not the export itself.
    assert [r["action"] for r in rows] == ["auth.sign_in", "tenant.member_added", "auth.sign_in_failed", "auth.sign_in"]
    assert AuditEvent.objects.filter(action="audit.export", tenant_id="tenant-a").count() == 1


def test_console_compliance_report_page_and_download(personas, client_for, trail):
    client = client_for(personas.a_auditor)
    html = client.get("/audit/compliance/?tenant=tenant-a").content.decode()
    assert "Total actions" in html and "verified" in html
    download = client.get("/audit/compliance/?tenant=tenant-a&download=json")
    assert json.loads(download.content)["total_actions"] == 4  # the trail and this client's sign-in


def test_console_compliance_and_export_refuse_bad_dates_with_400(personas, client_for, trail):
    client = client_for(personas.a_admin)
    response = client.get("/audit/compliance/?tenant=tenant-a&since=2026-05-01&until=2026-04-01")
    assert response.status_code == 400 and "Must be after From." in response.content.decode()
    assert client.get("/audit/export.csv?since=garbage").status_code == 400
    assert not AuditEvent.objects.filter(action="audit.export").exists()
