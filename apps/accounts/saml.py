"""SAML 2.0 service provider per tenant (python3-saml, strict): SP metadata, SP-initiated
sign-in with tracked request ids, the assertion consumer with a replay cache, single logout."""

from __future__ import annotations

import time
from urllib.parse import urlparse

from django.conf import settings
from django.urls import reverse
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Error, OneLogin_Saml2_Utils

from apps.core.redis import get_redis, key

from .models import IdentityProvider

REQUEST_TTL = 600
# AuthnContext classes that mean the IdP did MFA itself.
MFA_CONTEXTS = {
    "https://refeds.org/profile/mfa",
    "http://schemas.microsoft.com/claims/multipleauthn",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
}


class SAMLError(Exception):
    """A response was refused; `reason` is for the audit trail, the message for the user."""

    def __init__(self, reason: str):
        super().__init__("Single sign-on failed. Ask your administrator to check the identity provider.")
        self.reason = reason


def sp_urls(tenant_id: str) -> dict[str, str]:
    base = settings.SITE_URL
    return {
        "entity_id": base + reverse("accounts:saml-metadata", args=[tenant_id]),
        "acs": base + reverse("accounts:saml-acs", args=[tenant_id]),
        "sls": base + reverse("accounts:saml-sls", args=[tenant_id]),
    }


def saml_settings(provider: IdentityProvider) -> OneLogin_Saml2_Settings:
    urls = sp_urls(provider.tenant_id)
    data = {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": urls["entity_id"],
            "assertionConsumerService": {"url": urls["acs"], "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
            "singleLogoutService": {"url": urls["sls"], "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
            "NameIDFormat": OneLogin_Saml2_Constants.NAMEID_EMAIL_ADDRESS,
            "x509cert": "",
            "privateKey": "",
        },
        "idp": {
            "entityId": provider.saml_idp_entity_id,
            "singleSignOnService": {"url": provider.saml_sso_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
            "singleLogoutService": {"url": provider.saml_slo_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
            "x509cert": provider.saml_idp_x509_cert,
        },
        "security": {
            "authnRequestsSigned": False,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": False,
            "wantNameId": True,
            "wantAttributeStatement": False,
            "requestedAuthnContext": False,
            "rejectDeprecatedAlgorithm": True,
            "rejectUnsolicitedResponsesWithInResponseTo": True,
            "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
            "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
        },
    }
    try:
        return OneLogin_Saml2_Settings(data, sp_validation_only=False)
    except OneLogin_Saml2_Error as exc:
        raise SAMLError(f"invalid SAML settings: {exc}") from None


def parse_idp_metadata(xml: str) -> dict[str, str]:
    """Entity id, SSO and SLO URLs and signing certificate from uploaded IdP metadata."""
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml)
    idp = parsed.get("idp") or {}
    cert = idp.get("x509cert") or (idp.get("x509certMulti", {}).get("signing") or [""])[0]
    return {
        "saml_idp_entity_id": idp.get("entityId", ""),
        "saml_sso_url": (idp.get("singleSignOnService") or {}).get("url", ""),
        "saml_slo_url": (idp.get("singleLogoutService") or {}).get("url", ""),
        "saml_idp_x509_cert": cert,
    }


def _request_data(request) -> dict:
    # URLs come from SITE_URL, not the Host header, so Destination and Recipient are checked
    # against the address the IdP was told about.
    site = urlparse(settings.SITE_URL)
    return {
        "https": "on" if site.scheme == "https" else "off",
        "http_host": site.netloc,
        "script_name": request.path,
        "get_data": request.GET.copy(),
        "post_data": request.POST.copy(),
        "query_string": request.META.get("QUERY_STRING", ""),
    }


def _request_key(tenant_id: str, request_id: str) -> str:
    return key("saml", "request", tenant_id, request_id)


def metadata_xml(provider: IdentityProvider) -> str:
    config = saml_settings(provider)
    metadata = config.get_sp_metadata()
    errors = config.validate_metadata(metadata)
    if errors:
        raise SAMLError("invalid SP metadata: " + ", ".join(errors))
    return metadata.decode() if isinstance(metadata, bytes) else metadata


def begin_sign_in(request, provider: IdentityProvider, *, next_url: str = "/") -> str:
    """The IdP URL to redirect to; the AuthnRequest id is remembered for ten minutes."""
    auth = OneLogin_Saml2_Auth(_request_data(request), saml_settings(provider))
    url = auth.login(return_to=next_url)
    get_redis().set(_request_key(provider.tenant_id, auth.get_last_request_id()), "1", ex=REQUEST_TTL)
    return url


def consume_response(request, provider: IdentityProvider) -> dict:
    """Validate a posted SAMLResponse. Returns {email, groups, mfa, name_id, session_index};
    raises SAMLError with the reason otherwise."""
    encoded = request.POST.get("SAMLResponse", "")
    if not encoded:
        raise SAMLError("no SAMLResponse")
    config = saml_settings(provider)
    try:
        in_response_to = OneLogin_Saml2_Response(config, encoded).document.get("InResponseTo")
    except Exception as exc:  # malformed base64 or XML: refuse, never a 500
        raise SAMLError(f"unreadable response: {exc.__class__.__name__}") from None
    if in_response_to:
        # One use: a tracked id is consumed here whether the response then passes or not.
        if not get_redis().getdel(_request_key(provider.tenant_id, in_response_to)):
            raise SAMLError("unknown or already used InResponseTo")
    elif not provider.saml_allow_idp_initiated:
        raise SAMLError("IdP-initiated sign-in is disabled for this provider")

    auth = OneLogin_Saml2_Auth(_request_data(request), config)
    try:
        auth.process_response(request_id=in_response_to or None)
    except Exception as exc:
        raise SAMLError(f"invalid response: {exc}") from None
    if auth.get_errors() or not auth.is_authenticated():
        raise SAMLError(auth.get_last_error_reason() or ", ".join(auth.get_errors()) or "not authenticated")

    assertion_id = auth.get_last_assertion_id()
    not_on_or_after = auth.get_last_assertion_not_on_or_after() or (time.time() + REQUEST_TTL)
    ttl = max(60, int(not_on_or_after - time.time()) + 300)
    if not get_redis().set(key("saml", "assertion", provider.tenant_id, assertion_id), "1", nx=True, ex=ttl):
        raise SAMLError("replayed assertion")

    attributes = auth.get_attributes()
    email = auth.get_nameid() or ""
    if provider.saml_email_attribute:
        email = (attributes.get(provider.saml_email_attribute) or [""])[0]
    groups = attributes.get(provider.saml_groups_attribute, []) if provider.saml_groups_attribute else []
    return {
        "email": email.strip().lower(),
        "groups": list(groups),
        "mfa": bool(MFA_CONTEXTS & set(auth.get_last_authn_contexts() or [])),
        "name_id": auth.get_nameid(),
        "name_id_format": auth.get_nameid_format(),
        "session_index": auth.get_session_index(),
    }


def begin_logout(request, provider: IdentityProvider, *, name_id: str, session_index: str | None) -> str | None:
    """The IdP's logout URL for single logout, or None when the IdP has none."""
    if not provider.saml_slo_url:
        return None
    auth = OneLogin_Saml2_Auth(_request_data(request), saml_settings(provider))
    url = auth.logout(return_to=settings.SITE_URL + reverse("accounts:signin"), name_id=name_id,
                      session_index=session_index, name_id_format=OneLogin_Saml2_Constants.NAMEID_EMAIL_ADDRESS)
    get_redis().set(_request_key(provider.tenant_id, "slo:" + auth.get_last_request_id()), "1", ex=REQUEST_TTL)
    return url


def process_logout(request, provider: IdentityProvider, *, delete_session) -> str | None:
    """Handle the IdP's LogoutRequest or LogoutResponse; returns a URL to redirect to, if any."""
    request_id = None
    if request.GET.get("SAMLResponse"):
        # A LogoutResponse must answer a LogoutRequest this SP sent (and only once).
        try:
            xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(request.GET["SAMLResponse"])
            request_id = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True)).get("InResponseTo")
        except Exception as exc:  # malformed: refuse, never a 500
            raise SAMLError(f"unreadable LogoutResponse: {exc.__class__.__name__}") from None
        if not request_id or not get_redis().getdel(_request_key(provider.tenant_id, "slo:" + request_id)):
            raise SAMLError("LogoutResponse answers no logout request of ours")
    auth = OneLogin_Saml2_Auth(_request_data(request), saml_settings(provider))
    url = auth.process_slo(delete_session_cb=delete_session, request_id=request_id)
    if auth.get_errors():
        raise SAMLError(auth.get_last_error_reason() or ", ".join(auth.get_errors()))
    return url


def test_connection(provider: IdentityProvider) -> list[str]:
    """Problems with the configuration, as sentences (empty when it looks usable)."""
    problems = []
    for field, label in (("saml_idp_entity_id", "IdP entity id"), ("saml_sso_url", "SSO URL"), ("saml_idp_x509_cert", "IdP certificate")):
        if not getattr(provider, field):
            problems.append(f"The {label} is missing.")
    if problems:
        return problems
    try:
        from cryptography import x509

        pem = OneLogin_Saml2_Utils.format_cert(provider.saml_idp_x509_cert)
        cert = x509.load_pem_x509_certificate(pem.encode())
        if cert.not_valid_after_utc.timestamp() < time.time():
            problems.append("The IdP certificate has expired.")
    except ValueError:
        problems.append("The IdP certificate is not a valid PEM certificate.")
    try:
        metadata_xml(provider)
    except Exception as exc:
        problems.append(f"The SP settings are not valid: {exc}")
    return problems
