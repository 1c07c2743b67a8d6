"""SAML 2.0 sign-in: responses signed here with a test IdP key are accepted when valid and
refused for every classic attack and mistake."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from apps.accounts import services
from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from tests.accounts import saml_idp as idp

pytestmark = pytest.mark.django_db

SITE = "http://sp.switchyard.test"
ACS = f"{SITE}/accounts/saml/tenant-a/acs/"
AUDIENCE = f"{SITE}/accounts/saml/tenant-a/metadata/"


@pytest.fixture(scope="module")
def idp_keys():
    return idp.make_key_and_cert()


@pytest.fixture
def provider(personas, idp_keys, settings, redis_client):
    settings.SITE_URL = SITE
    _, cert = idp_keys
    return services.create_identity_provider(
        tenant=personas.tenant_a, actor=personas.a_admin, kind="saml", name="Corp IdP", email_domains=["corp.test"],
        saml_idp_entity_id=idp.IDP_ENTITY_ID, saml_sso_url=idp.IDP_SSO_URL, saml_slo_url=idp.IDP_SLO_URL,
        saml_idp_x509_cert=cert, role_mapping={"llm-admins": Role.TENANT_ADMIN, "llm-users": Role.MEMBER}, default_role="",
    )


def start(client) -> str:
    """Begin SP-initiated sign-in; returns the AuthnRequest id the IdP will answer."""
    response = client.get("/accounts/saml/tenant-a/login/")
    assert response.status_code == 302 and response["Location"].startswith(idp.IDP_SSO_URL)
    request_xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(parse_qs(urlparse(response["Location"]).query)["SAMLRequest"][0])
    return re.search(rb'ID="([^"]+)"', request_xml).group(1).decode()


def signed_response(keys, *, request_id, name_id="alice@corp.test", groups=("llm-users",), destination=ACS,
                    audience=AUDIENCE, recipient=ACS, **assertion_kw) -> str:
    key, cert = keys
    assertion = idp.sign(idp.assertion_xml(name_id=name_id, audience=audience, recipient=recipient,
                                           in_response_to=request_id, groups=groups, **assertion_kw), key, cert)
    return idp.response_xml(assertion, destination=destination, in_response_to=request_id)


def post(client, xml: str):
    return client.post("/accounts/saml/tenant-a/acs/", {"SAMLResponse": idp.encode(xml), "RelayState": "/tenants/"})


def signed_in_email(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).email if user_id else None


def test_a_valid_signed_response_signs_in_a_new_user_with_the_mapped_role(provider, idp_keys):
    client = Client()
    request_id = start(client)
    response = post(client, signed_response(idp_keys, request_id=request_id, groups=("llm-users",)))
    assert response.status_code == 302 and response["Location"] == "/tenants/"
    assert signed_in_email(client) == "alice@corp.test"
    assert User.objects.get(email="alice@corp.test").tenant_roles() == {"tenant-a": Role.MEMBER}
    assert client.get("/tenants/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.sign_in", tenant_id="tenant-a", metadata__backend="SAMLSignInBackend").exists()


def test_an_admin_group_maps_to_tenant_admin_who_must_then_pass_mfa(provider, idp_keys):
    client = Client()
    request_id = start(client)
    post(client, signed_response(idp_keys, request_id=request_id, groups=("llm-admins",)))
    assert User.objects.get(email="alice@corp.test").tenant_roles() == {"tenant-a": Role.TENANT_ADMIN}
    assert client.get("/tenants/")["Location"].startswith("/accounts/mfa/enrol/")


def test_an_admin_whose_idp_asserted_mfa_goes_straight_in(provider, idp_keys):
    client = Client()
    request_id = start(client)
    post(client, signed_response(idp_keys, request_id=request_id, groups=("llm-admins",), context=idp.MFA_CONTEXT))
    assert client.get("/tenants/").status_code == 200


def test_a_user_in_no_mapped_group_is_refused_and_loses_an_old_role(provider, idp_keys):
    client = Client()
    post(client, signed_response(idp_keys, request_id=start(client), groups=("llm-users",)))
    other = Client()
    response = post(other, signed_response(idp_keys, request_id=start(other), groups=("marketing",)))
    assert response.status_code == 403
    assert User.objects.get(email="alice@corp.test").tenant_roles() == {}


def _assert_refused(client, response, reason: str):
    """Refused, nobody signed in, and the audit trail says why (each case fails its own check)."""
    assert response.status_code == 403
    assert signed_in_email(client) is None
    assert b"Single sign-on failed" in response.content or b"not allowed" in response.content
    event = AuditEvent.objects.filter(action="auth.sign_in_failed", result="failure").order_by("-pk").first()
    assert reason in event.metadata["reason"]


def test_an_unsigned_assertion_is_refused(provider, idp_keys):
    client = Client()
    request_id = start(client)
    assertion = idp.assertion_xml(name_id="alice@corp.test", audience=AUDIENCE, recipient=ACS, in_response_to=request_id)
    _assert_refused(client, post(client, idp.response_xml(assertion, destination=ACS, in_response_to=request_id)), "is not signed")


def test_an_assertion_signed_by_another_key_is_refused(provider, idp_keys):
    client = Client()
    _assert_refused(client, post(client, signed_response(idp.make_key_and_cert("evil"), request_id=start(client))), "Signature validation failed")


def test_modified_signed_content_is_refused(provider, idp_keys):
    client = Client()
    xml = signed_response(idp_keys, request_id=start(client), name_id="alice@corp.test")
    _assert_refused(client, post(client, xml.replace("alice@corp.test", "boss@corp.test")), "Signature validation failed")


def test_signature_wrapping_is_refused(provider, idp_keys):
    """XSW: the genuine signed assertion is hidden in Extensions and an unsigned forged one,
    carrying the genuine signature, is where a naive SP looks."""
    client = Client()
    request_id = start(client)
    key, cert = idp_keys
    genuine = idp.sign(idp.assertion_xml(name_id="alice@corp.test", audience=AUDIENCE, recipient=ACS,
                                         in_response_to=request_id, groups=("llm-users",)), key, cert)
    signature = re.search(r"<ds:Signature.*</ds:Signature>", genuine, re.S).group(0)
    genuine_id = re.search(r'ID="([^"]+)"', genuine).group(1)
    forged = idp.assertion_xml(name_id="boss@corp.test", audience=AUDIENCE, recipient=ACS, in_response_to=request_id,
                               groups=("llm-admins",), assertion_id="_forged")
    forged = forged.replace("</saml:Issuer>", "</saml:Issuer>" + signature, 1)
    assert genuine_id in forged  # the reference still names the genuine assertion
    xml = idp.response_xml(forged, destination=ACS, in_response_to=request_id,
                           extensions=f"<samlp:Extensions>{genuine}</samlp:Extensions>")
    _assert_refused(client, post(client, xml), "must contain 1 assertion")
    assert not User.objects.filter(email="boss@corp.test").exists()


def test_a_comment_injected_into_the_name_id_does_not_truncate_it(provider, idp_keys):
    """The IdP vouched for boss@corp.test.evil.test; a comment must not turn that into boss@corp.test."""
    client = Client()
    xml = signed_response(idp_keys, request_id=start(client), name_id="boss@corp.test.evil.test")
    xml = xml.replace("boss@corp.test.evil.test", "boss@corp.test<!---->.evil.test")
    _assert_refused(client, post(client, xml), "email domain not served")
    assert not User.objects.filter(email="boss@corp.test").exists()


@pytest.mark.parametrize("field", ["audience", "destination", "recipient"])
def test_a_response_meant_for_another_service_is_refused(provider, idp_keys, field):
    client = Client()
    wrong = {field: "https://other-sp.test/acs/"}
    reason = {"audience": "not a valid audience", "destination": "instead of", "recipient": "SubjectConfirmation"}[field]
    _assert_refused(client, post(client, signed_response(idp_keys, request_id=start(client), **wrong)), reason)


def test_an_expired_assertion_is_refused(provider, idp_keys):
    client = Client()
    past = datetime.now(UTC) - timedelta(hours=2)
    xml = signed_response(idp_keys, request_id=start(client), not_before=past - timedelta(minutes=5), not_on_or_after=past)
    _assert_refused(client, post(client, xml), "expired")


def test_a_not_yet_valid_assertion_is_refused(provider, idp_keys):
    client = Client()
    future = datetime.now(UTC) + timedelta(hours=2)
    xml = signed_response(idp_keys, request_id=start(client), not_before=future, not_on_or_after=future + timedelta(minutes=5))
    _assert_refused(client, post(client, xml), "not yet valid")


def test_an_unknown_in_response_to_is_refused(provider, idp_keys):
    client = Client()
    start(client)
    _assert_refused(client, post(client, signed_response(idp_keys, request_id="_never-sent")), "unknown or already used InResponseTo")


def test_two_assertions_are_refused(provider, idp_keys):
    client = Client()
    request_id = start(client)
    key, cert = idp_keys
    one = idp.sign(idp.assertion_xml(name_id="alice@corp.test", audience=AUDIENCE, recipient=ACS, in_response_to=request_id), key, cert)
    two = idp.sign(idp.assertion_xml(name_id="boss@corp.test", audience=AUDIENCE, recipient=ACS, in_response_to=request_id), key, cert)
    _assert_refused(client, post(client, idp.response_xml(one, two, destination=ACS, in_response_to=request_id)), "must contain 1 assertion")


def test_a_replayed_response_is_refused(provider, idp_keys):
    client = Client()
    xml = signed_response(idp_keys, request_id=start(client))
    assert post(client, xml).status_code == 302
    attacker = Client()
    _assert_refused(attacker, post(attacker, xml), "InResponseTo")


def test_a_replayed_idp_initiated_response_is_refused_by_the_assertion_cache(provider, idp_keys):
    services.update_identity_provider(provider=provider, actor=None, saml_allow_idp_initiated=True)
    xml = signed_response(idp_keys, request_id=None)
    first = Client()
    assert post(first, xml).status_code == 302
    second = Client()
    _assert_refused(second, post(second, xml), "replayed assertion")
    assert AuditEvent.objects.filter(action="auth.sign_in_failed", result="failure", metadata__reason="replayed assertion").exists()


def test_idp_initiated_sign_in_is_off_unless_enabled(provider, idp_keys):
    client = Client()
    _assert_refused(client, post(client, signed_response(idp_keys, request_id=None)), "IdP-initiated sign-in is disabled")


def test_garbage_in_saml_response_is_a_403_not_a_500(provider):
    client = Client()
    response = client.post("/accounts/saml/tenant-a/acs/", {"SAMLResponse": "not base64 at all!!"})
    assert response.status_code == 403


def test_the_sign_in_form_sends_a_corp_email_to_the_idp(provider):
    response = Client().post("/accounts/signin/", {"email": "alice@corp.test", "password": ""})
    assert response.status_code == 302 and response["Location"].startswith(idp.IDP_SSO_URL)


def test_the_tenant_link_starts_sso(provider):
    response = Client().get("/accounts/signin/t/tenant-a/")
    assert response.status_code == 302 and response["Location"].startswith(idp.IDP_SSO_URL)


def test_sp_metadata_is_published_per_tenant(provider):
    response = Client().get("/accounts/saml/tenant-a/metadata/")
    assert response.status_code == 200
    assert AUDIENCE.encode() in response.content and ACS.encode() in response.content
    assert Client().get("/accounts/saml/tenant-b/metadata/").status_code == 404


def test_signing_out_goes_through_the_idps_single_logout(provider, idp_keys):
    client = Client()
    post(client, signed_response(idp_keys, request_id=start(client)))
    response = client.post("/accounts/signout/")
    assert response["Location"].startswith(idp.IDP_SLO_URL)
    assert signed_in_email(client) is None


def test_an_idp_logout_request_ends_the_local_session(provider, idp_keys):
    client = Client()
    post(client, signed_response(idp_keys, request_id=start(client)))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    logout_request = (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_lr1" Version="2.0" IssueInstant="{now}" Destination="{SITE}/accounts/saml/tenant-a/sls/">'
        f"<saml:Issuer>{idp.IDP_ENTITY_ID}</saml:Issuer>"
        '<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">alice@corp.test</saml:NameID>'
        "</samlp:LogoutRequest>"
    )
    response = client.get("/accounts/saml/tenant-a/sls/", {"SAMLRequest": OneLogin_Saml2_Utils.deflate_and_base64_encode(logout_request)})
    assert response.status_code == 302 and response["Location"].startswith(idp.IDP_SLO_URL)
    assert signed_in_email(client) is None


def _logout_response(in_response_to: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (
        '<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_lresp1" Version="2.0" IssueInstant="{now}" Destination="{SITE}/accounts/saml/tenant-a/sls/" InResponseTo="{in_response_to}">'
        f"<saml:Issuer>{idp.IDP_ENTITY_ID}</saml:Issuer>"
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        "</samlp:LogoutResponse>"
    )
    return OneLogin_Saml2_Utils.deflate_and_base64_encode(xml)


def test_the_idps_logout_response_is_accepted_once_and_only_for_our_request(provider, idp_keys):
    client = Client()
    post(client, signed_response(idp_keys, request_id=start(client)))
    to_idp = client.post("/accounts/signout/")["Location"]
    logout_xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(parse_qs(urlparse(to_idp).query)["SAMLRequest"][0])
    request_id = re.search(rb'ID="([^"]+)"', logout_xml).group(1).decode()
    assert client.get("/accounts/saml/tenant-a/sls/", {"SAMLResponse": _logout_response("_unknown")}).status_code == 400
    done = client.get("/accounts/saml/tenant-a/sls/", {"SAMLResponse": _logout_response(request_id)})
    assert done.status_code == 302 and done["Location"] == "/accounts/signin/"
    assert client.get("/accounts/saml/tenant-a/sls/", {"SAMLResponse": _logout_response(request_id)}).status_code == 400
