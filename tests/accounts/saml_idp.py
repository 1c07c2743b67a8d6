"""A test SAML identity provider: a self-signed certificate and signed responses built here."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.utils import OneLogin_Saml2_Utils

IDP_ENTITY_ID = "https://idp.corp.test/saml"
IDP_SSO_URL = "https://idp.corp.test/sso"
IDP_SLO_URL = "https://idp.corp.test/slo"
MFA_CONTEXT = "https://refeds.org/profile/mfa"
PASSWORD_CONTEXT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


def make_key_and_cert(common_name: str = "test-idp") -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def assertion_xml(*, name_id: str, audience: str, recipient: str, in_response_to: str | None, groups=(),
                  not_before: datetime | None = None, not_on_or_after: datetime | None = None,
                  context: str = PASSWORD_CONTEXT, assertion_id: str | None = None, issuer: str = IDP_ENTITY_ID) -> str:
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(minutes=1)
    not_on_or_after = not_on_or_after or now + timedelta(minutes=5)
    irt = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    values = "".join(f"<saml:AttributeValue>{g}</saml:AttributeValue>" for g in groups)
    return (
        f'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{assertion_id or "_a" + uuid.uuid4().hex}" '
        f'Version="2.0" IssueInstant="{_ts(now)}">'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        f'<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name_id}</saml:NameID>'
        f'<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml:SubjectConfirmationData NotOnOrAfter="{_ts(not_on_or_after)}" Recipient="{recipient}"{irt}/>'
        f"</saml:SubjectConfirmation></saml:Subject>"
        f'<saml:Conditions NotBefore="{_ts(not_before)}" NotOnOrAfter="{_ts(not_on_or_after)}">'
        f"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>"
        f'<saml:AuthnStatement AuthnInstant="{_ts(now)}" SessionIndex="_s{uuid.uuid4().hex}">'
        f"<saml:AuthnContext><saml:AuthnContextClassRef>{context}</saml:AuthnContextClassRef></saml:AuthnContext>"
        f"</saml:AuthnStatement>"
        f'<saml:AttributeStatement><saml:Attribute Name="groups">{values}</saml:Attribute></saml:AttributeStatement>'
        f"</saml:Assertion>"
    )


def sign(xml: str, key: str, cert: str) -> str:
    signed = OneLogin_Saml2_Utils.add_sign(
        xml, key, cert, sign_algorithm=OneLogin_Saml2_Constants.RSA_SHA256, digest_algorithm=OneLogin_Saml2_Constants.SHA256
    )
    text = signed.decode() if isinstance(signed, bytes) else signed
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2:].lstrip()
    return text


def response_xml(*assertions: str, destination: str, in_response_to: str | None, extensions: str = "") -> str:
    irt = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    return (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_r{uuid.uuid4().hex}" Version="2.0" IssueInstant="{_ts(datetime.now(UTC))}" Destination="{destination}"{irt}>'
        f"<saml:Issuer>{IDP_ENTITY_ID}</saml:Issuer>"
        f"{extensions}"
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        + "".join(assertions)
        + "</samlp:Response>"
    )


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()
