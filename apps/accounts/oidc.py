"""OpenID Connect relying party per tenant: authorization code with PKCE (S256), state and
nonce, discovery, and an ID token whose signature and claims are verified."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlencode

import httpx
import jwt
from django.conf import settings
from django.urls import reverse

from apps.core.redis import get_redis, key

from .models import IdentityProvider

FLOW_TTL = 600
DISCOVERY_TTL = 3600
SESSION_KEY = "oidc_flows"
MFA_AMR = {"mfa", "otp", "hwk", "swk", "sms", "fpt", "face"}
_jwks_clients: dict[str, jwt.PyJWKClient] = {}


class OIDCError(Exception):
    def __init__(self, reason: str):
        super().__init__("Single sign-on failed. Ask your administrator to check the identity provider.")
        self.reason = reason


def redirect_uri(tenant_id: str) -> str:
    return settings.SITE_URL + reverse("accounts:oidc-callback", args=[tenant_id])


def discover(provider: IdentityProvider) -> dict:
    """The provider's discovery document, cached in Redis for an hour."""
    cache_key = key("oidc", "discovery", hashlib.sha256(provider.oidc_issuer.encode()).hexdigest()[:24])
    client = get_redis()
    cached = client.get(cache_key)
    if cached:
        return json.loads(cached)
    url = provider.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=settings.OIDC_HTTP_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OIDCError(f"discovery failed: {exc.__class__.__name__}") from None
    if document.get("issuer", "").rstrip("/") != provider.oidc_issuer.rstrip("/"):
        raise OIDCError("discovery issuer does not match the configured issuer")
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not document.get(field):
            raise OIDCError(f"discovery document lacks {field}")
    client.set(cache_key, json.dumps(document), ex=DISCOVERY_TTL)
    return document


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def begin_sign_in(request, provider: IdentityProvider, *, next_url: str = "/") -> str:
    """The authorization URL; state, nonce and the PKCE verifier wait in the session."""
    document = discover(provider)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    flows = {s: f for s, f in request.session.get(SESSION_KEY, {}).items() if f["started"] > time.time() - FLOW_TTL}
    flows[state] = {"tenant": provider.tenant_id, "provider": str(provider.pk), "nonce": nonce,
                    "verifier": verifier, "next": next_url, "started": time.time()}
    request.session[SESSION_KEY] = flows
    params = {
        "response_type": "code",
        "client_id": provider.oidc_client_id,
        "redirect_uri": redirect_uri(provider.tenant_id),
        "scope": provider.oidc_scopes or "openid email",
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    return document["authorization_endpoint"] + "?" + urlencode(params)


def take_flow(request, state: str) -> dict:
    """The flow this state started (removed: a state is good once)."""
    flows = request.session.get(SESSION_KEY, {})
    flow = flows.pop(state or "", None)
    request.session[SESSION_KEY] = flows
    if flow is None or flow["started"] < time.time() - FLOW_TTL:
        raise OIDCError("unknown or expired state")
    return flow


def _jwks_client(uri: str) -> jwt.PyJWKClient:
    client = _jwks_clients.get(uri)
    if client is None:
        client = jwt.PyJWKClient(uri, cache_keys=True, lifespan=300, timeout=settings.OIDC_HTTP_TIMEOUT)
        _jwks_clients[uri] = client
    return client


def finish_sign_in(request, provider: IdentityProvider, flow: dict, *, code: str) -> dict:
    """Exchange the code (with the PKCE verifier) and verify the ID token.
    Returns {email, groups, mfa, subject}."""
    if not code:
        raise OIDCError("no authorization code")
    if not flow.get("verifier"):
        raise OIDCError("no PKCE verifier for this flow")
    document = discover(provider)
    try:
        response = httpx.post(
            document["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri(provider.tenant_id),
                "code_verifier": flow["verifier"],
            },
            auth=(provider.oidc_client_id, provider.oidc_client_secret or ""),
            timeout=settings.OIDC_HTTP_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise OIDCError(f"token endpoint unreachable: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise OIDCError(f"token endpoint refused the code: {response.status_code}")
    id_token = (response.json() or {}).get("id_token")
    if not id_token:
        raise OIDCError("no id_token in the token response")
    try:
        signing_key = _jwks_client(document["jwks_uri"]).get_signing_key_from_jwt(id_token)
        claims = jwt.decode(
            id_token, signing_key.key, algorithms=["RS256", "ES256", "PS256"],
            audience=provider.oidc_client_id, issuer=document["issuer"],
            options={"require": ["exp", "iat", "iss", "aud", "sub"]}, leeway=30,
        )
    except jwt.PyJWTError as exc:
        raise OIDCError(f"ID token rejected: {exc.__class__.__name__}: {exc}") from None
    if not secrets.compare_digest(str(claims.get("nonce", "")), flow["nonce"]):
        raise OIDCError("nonce mismatch")
    if claims.get("email_verified") is False:
        raise OIDCError("email not verified by the provider")
    groups = claims.get(provider.oidc_groups_claim, []) if provider.oidc_groups_claim else []
    if isinstance(groups, str):
        groups = [groups]
    return {
        "email": str(claims.get("email", "")).strip().lower(),
        "groups": list(groups),
        "mfa": bool(MFA_AMR & set(claims.get("amr") or [])),
        "subject": claims["sub"],
    }


def test_connection(provider: IdentityProvider) -> list[str]:
    problems = []
    if not provider.oidc_issuer or not provider.oidc_client_id:
        return ["The issuer and client id are required."]
    try:
        document = discover(provider)
        response = httpx.get(document["jwks_uri"], timeout=settings.OIDC_HTTP_TIMEOUT)
        response.raise_for_status()
        if not response.json().get("keys"):
            problems.append("The provider publishes no signing keys.")
        if "S256" not in document.get("code_challenge_methods_supported", ["S256"]):
            problems.append("The provider does not support PKCE with S256.")
    except OIDCError as exc:
        problems.append(f"Discovery failed: {exc.reason}.")
    except (httpx.HTTPError, ValueError) as exc:
        problems.append(f"The JWKS could not be read: {exc.__class__.__name__}.")
    return problems
