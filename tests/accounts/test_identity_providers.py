"""Identity-provider settings in the console and the API: tenant admins manage their own,
secrets are write-only, outsiders get 404 and non-admins 403, and "test connection" reports."""

from __future__ import annotations

import pytest

from apps.accounts import services
from apps.accounts.models import IdentityProvider
from apps.audit.models import AuditEvent
from tests.accounts import saml_idp

pytestmark = pytest.mark.django_db

METADATA = """<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.meta.test/saml">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>
      <ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.meta.test/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"""


@pytest.fixture(scope="module")
def cert():
    return saml_idp.make_key_and_cert()[1]


def _cert_body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)


def test_a_tenant_admin_adds_a_saml_provider_from_metadata_in_the_console(personas, client_for, cert, settings):
    settings.SITE_URL = "http://sp.switchyard.test"
    client = client_for(personas.a_admin)
    assert client.get("/accounts/tenants/tenant-a/identity/new/?kind=saml").status_code == 200
    response = client.post("/accounts/tenants/tenant-a/identity/new/", {
        "kind": "saml", "name": "Meta IdP", "enabled": "on", "email_domains": "Meta.test, meta.example",
        "jit_create_users": "on", "default_role": "member", "role_mapping": "{}", "trust_idp_mfa": "on",
        "saml_metadata_xml": METADATA.format(cert=_cert_body(cert)), "saml_groups_attribute": "groups",
        "oidc_scopes": "openid email", "ldap_user_filter": "(mail=%(user)s)", "ldap_group_filter": "(objectClass=groupOfNames)",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = IdentityProvider.objects.get(tenant_id="tenant-a")
    assert provider.saml_idp_entity_id == "https://idp.meta.test/saml"
    assert provider.saml_sso_url == "https://idp.meta.test/sso"
    assert provider.email_domains == ["meta.test", "meta.example"]
    assert AuditEvent.objects.filter(action="identity_provider.create", tenant_id="tenant-a").exists()
    page = client.get("/accounts/tenants/tenant-a/identity/")
    assert b"Meta IdP" in page.content
    tested = client.post(f"/accounts/tenants/tenant-a/identity/{provider.pk}/test/", HTTP_HX_REQUEST="true")
    assert tested.status_code == 200 and b"looks usable" in tested.content


def test_a_provider_without_its_required_fields_gets_field_errors(personas, client_for):
    response = client_for(personas.a_admin).post("/accounts/tenants/tenant-a/identity/new/", {
        "kind": "oidc", "name": "Half", "role_mapping": "{}", "default_role": "member",
    })
    assert response.status_code == 400
    assert b"required for this kind of provider" in response.content


def test_a_member_gets_403_and_an_outsider_404_on_identity_settings(personas, client_for):
    assert client_for(personas.a_member).get("/accounts/tenants/tenant-a/identity/").status_code == 403
    assert client_for(personas.b_admin).get("/accounts/tenants/tenant-a/identity/").status_code == 404


def test_the_api_creates_a_provider_with_a_write_only_secret(personas, api_for):
    api = api_for(personas.a_admin)
    response = api.post("/api/v1/identity-providers/", {
        "tenant": "tenant-a", "kind": "oidc", "name": "OIDC", "email_domains": ["oidc-a.test"],
        "oidc_issuer": "https://login.oidc-a.test", "oidc_client_id": "sy", "oidc_client_secret": "very-secret",
    }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "oidc_client_secret" not in body and body["has_client_secret"] is True
    provider = IdentityProvider.objects.get(pk=body["id"])
    assert provider.oidc_client_secret == "very-secret"
    assert "very-secret" not in str(AuditEvent.objects.filter(tenant_id="tenant-a").values_list("metadata", flat=True))
    # A blank secret on update keeps the stored one.
    assert api.patch(f"/api/v1/identity-providers/{provider.pk}/", {"oidc_client_secret": "", "name": "OIDC 2"}, format="json").status_code == 200
    provider.refresh_from_db()
    assert provider.oidc_client_secret == "very-secret" and provider.name == "OIDC 2"


def test_the_api_gives_field_errors_for_bad_input(personas, api_for):
    response = api_for(personas.a_admin).post("/api/v1/identity-providers/", {
        "tenant": "tenant-a", "kind": "ldap", "name": "X", "role_mapping": {"g": "emperor"},
    }, format="json")
    assert response.status_code == 400
    assert "role_mapping" in response.json()["error"]["fields"]


def test_a_domain_can_belong_to_one_provider_only(personas, api_for):
    services.create_identity_provider(tenant=personas.tenant_b, actor=None, kind="oidc", name="B", email_domains=["shared.test"],
                                      oidc_issuer="https://b.test", oidc_client_id="b")
    response = api_for(personas.a_admin).post("/api/v1/identity-providers/", {
        "tenant": "tenant-a", "kind": "oidc", "name": "A", "email_domains": ["shared.test"],
        "oidc_issuer": "https://a.test", "oidc_client_id": "a",
    }, format="json")
    assert response.status_code == 400 and "email_domains" in response.json()["error"]["fields"]


def test_an_outsider_gets_404_for_another_tenants_provider_and_cannot_create_one_there(personas, api_for):
    provider = services.create_identity_provider(tenant=personas.tenant_a, actor=None, kind="oidc", name="A",
                                                 oidc_issuer="https://a.test", oidc_client_id="a")
    outsider = api_for(personas.b_admin)
    assert outsider.get(f"/api/v1/identity-providers/{provider.pk}/").status_code == 404
    assert outsider.post(f"/api/v1/identity-providers/{provider.pk}/test/").status_code == 404
    assert outsider.post("/api/v1/identity-providers/", {"tenant": "tenant-a", "kind": "oidc", "name": "x",
                                                         "oidc_issuer": "https://x.test", "oidc_client_id": "x"}, format="json").status_code == 404
    member = api_for(personas.a_member)
    assert member.get(f"/api/v1/identity-providers/{provider.pk}/").status_code == 403
    assert member.get("/api/v1/identity-providers/").json()["results"] == []


def test_test_connection_reports_an_unreachable_oidc_issuer(personas, api_for, redis_client):
    provider = services.create_identity_provider(tenant=personas.tenant_a, actor=None, kind="oidc", name="A",
                                                 oidc_issuer="http://127.0.0.1:1", oidc_client_id="a")
    response = api_for(personas.a_admin).post(f"/api/v1/identity-providers/{provider.pk}/test/")
    assert response.status_code == 200
    assert response.json()["ok"] is False and "Discovery failed" in response.json()["problems"][0]
