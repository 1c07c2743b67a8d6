"""API access tokens (one hour) and rotating refresh tokens, and the DRF class that accepts
`Authorization: Bearer <access token>`. Only SHA-256 digests are stored; a short Redis cache
spares Postgres on every request."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.audit.services import Actor, record_event
from apps.core.redis import get_redis, key

from .models import AccessToken, RefreshToken, ServiceClient, User

ACCESS_PREFIX = "sya_"
REFRESH_PREFIX = "syr_"
CLIENT_ID_PREFIX = "syc_"
CLIENT_SECRET_PREFIX = "sycs_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _cache_key(token_hash: str) -> str:
    return key("auth", "access", token_hash)


@dataclass
class ServicePrincipal:
    """request.user for a service client's token: a tenant member with the client's role."""

    client_id: str
    pk: str
    name: str
    tenant_id: str
    role: str
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False
    is_platform_admin: bool = False
    is_staff: bool = False
    is_superuser: bool = False
    _roles: dict = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.client_id

    @property
    def email(self) -> str:
        return f"{self.client_id}@service"

    def tenant_roles(self) -> dict[str, str]:
        return {self.tenant_id: self.role}

    def forget_tenant_roles(self) -> None:
        return None

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def __str__(self) -> str:
        return f"service client {self.name}"


@dataclass
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    family: uuid.UUID

    def as_response(self) -> dict:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


class TokenError(Exception):
    """A grant was refused; the message is safe to show."""


def _issue(*, family: uuid.UUID, user=None, client: ServiceClient | None = None, tenant_id: str | None = None) -> IssuedTokens:
    now = timezone.now()
    access = ACCESS_PREFIX + secrets.token_urlsafe(32)
    refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
    common = {"family": family, "user": user, "client": client, "tenant_id": tenant_id, "created_at": now}
    AccessToken.objects.create(token_hash=digest(access), expires_at=now + timedelta(seconds=settings.ACCESS_TOKEN_SECONDS), **common)
    RefreshToken.objects.create(token_hash=digest(refresh), expires_at=now + timedelta(seconds=settings.REFRESH_TOKEN_SECONDS), **common)
    return IssuedTokens(access, refresh, settings.ACCESS_TOKEN_SECONDS, family)


def _actor_for(user=None, client: ServiceClient | None = None):
    if client is not None:
        # The audit log knows users, API keys and the system; a service client is a machine
        # credential like an API key, named by its public client id.
        return Actor("api_key", str(client.pk), f"service client {client.client_id}")
    return user


def issue_for_user(*, user: User, request=None, method: str = "password") -> IssuedTokens:
    with transaction.atomic():
        tokens = _issue(family=uuid.uuid4(), user=user)
        record_event(action="token.issue", tenant_id=None, actor=user, resource_type="token_family",
                     resource_id=str(tokens.family), request=request, metadata={"grant": method})
    return tokens


def create_service_client(*, tenant_id: str, name: str, role: str, created_by=None, request=None) -> tuple[ServiceClient, str]:
    """A new client; the secret is returned once and only its digest kept."""
    secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        client = ServiceClient.objects.create(
            tenant_id=tenant_id, name=name, role=role, created_by=created_by,
            client_id=CLIENT_ID_PREFIX + secrets.token_hex(12), secret_hash=digest(secret),
        )
        record_event(action="service_client.create", tenant_id=tenant_id, actor=created_by, resource_type="service_client",
                     resource_id=str(client.pk), request=request, metadata={"name": name, "role": role})
    return client, secret


def issue_for_client(*, client_id: str, client_secret: str, request=None) -> IssuedTokens:
    client = ServiceClient.objects.filter(client_id=client_id, is_active=True).select_related("tenant").first()
    # Compare even when the client is unknown, so timing does not tell which ids exist.
    expected = client.secret_hash if client else digest("no-such-client")
    if client is None or not hmac.compare_digest(expected, digest(client_secret or "")) or not client.tenant.is_active:
        raise TokenError("The client credentials are not valid.")
    with transaction.atomic():
        tokens = _issue(family=uuid.uuid4(), client=client, tenant_id=client.tenant_id)
        record_event(action="token.issue", tenant_id=client.tenant_id, actor=_actor_for(client=client),
                     resource_type="token_family", resource_id=str(tokens.family), request=request,
                     metadata={"grant": "client_credentials"})
    return tokens


def delete_service_client(*, client: ServiceClient, actor=None, request=None) -> None:
    """Remove a client; its tokens go with it (and out of the cache)."""
    with transaction.atomic():
        for family in set(AccessToken.objects.filter(client=client).values_list("family", flat=True)):
            revoke_family(family)
        record_event(action="service_client.delete", tenant_id=client.tenant_id, actor=actor, resource_type="service_client",
                     resource_id=str(client.pk), request=request, metadata={"name": client.name})
        client.delete()


def revoke_family(family: uuid.UUID) -> None:
    now = timezone.now()
    hashes = list(AccessToken.objects.filter(family=family, revoked_at__isnull=True).values_list("token_hash", flat=True))
    AccessToken.objects.filter(family=family, revoked_at__isnull=True).update(revoked_at=now)
    RefreshToken.objects.filter(family=family, revoked_at__isnull=True).update(revoked_at=now)
    if hashes:
        get_redis().delete(*[_cache_key(h) for h in hashes])


def refresh(*, refresh_token: str, request=None) -> IssuedTokens:
    """Trade a refresh token for a new pair. A used or revoked one means it leaked: the whole
    family is revoked."""
    with transaction.atomic():
        row = (
            RefreshToken.objects.select_for_update(of=("self",)).select_related("user", "client", "client__tenant")
            .filter(token_hash=digest(refresh_token or "")).first()
        )
        if row is None:
            raise TokenError("The refresh token is not valid.")
        tenant_id = row.tenant_id
        actor = _actor_for(row.user, row.client)
        if row.used_at is not None or row.revoked_at is not None:
            revoke_family(row.family)
            record_event(action="token.reuse_detected", tenant_id=tenant_id, actor=actor, resource_type="token_family",
                         resource_id=str(row.family), result="denied", request=request)
            reuse = True
        else:
            reuse = False
            principal_ok = (row.user is not None and row.user.is_active) or (
                row.client is not None and row.client.is_active and row.client.tenant.is_active
            )
            if row.expires_at <= timezone.now() or not principal_ok:
                raise TokenError("The refresh token is not valid.")
            row.used_at = timezone.now()
            row.save(update_fields=["used_at"])
            tokens = _issue(family=row.family, user=row.user, client=row.client, tenant_id=tenant_id)
            record_event(action="token.refresh", tenant_id=tenant_id, actor=actor, resource_type="token_family",
                         resource_id=str(row.family), request=request)
    if reuse:
        # Raised after the transaction commits, so the family's revocation sticks.
        raise TokenError("The refresh token is not valid.")
    return tokens


def revoke(*, token: str, request=None, actor=None) -> bool:
    """Revoke the family of an access or refresh token (RFC 7009: unknown tokens are no error)."""
    model = RefreshToken if (token or "").startswith(REFRESH_PREFIX) else AccessToken
    with transaction.atomic():
        row = model.objects.select_related("user", "client").filter(token_hash=digest(token or "")).first()
        if row is None:
            return False
        revoke_family(row.family)
        record_event(action="token.revoke", tenant_id=row.tenant_id, actor=actor or _actor_for(row.user, row.client),
                     resource_type="token_family", resource_id=str(row.family), request=request)
    return True


def revoke_all_for_user(*, user, actor=None, request=None) -> int:
    families = set(RefreshToken.objects.filter(user=user, revoked_at__isnull=True).values_list("family", flat=True))
    families |= set(AccessToken.objects.live().filter(user=user).values_list("family", flat=True))
    with transaction.atomic():
        for family in families:
            revoke_family(family)
        if families:
            record_event(action="token.revoke_all", tenant_id=None, actor=actor, resource_type="user",
                         resource_id=str(user.pk), request=request, metadata={"families": len(families)})
    return len(families)


def _lookup(token: str) -> dict | None:
    """{kind, id, expires} for a live access token: Redis first, then Postgres."""
    token_hash = digest(token)
    client = get_redis()
    cached = client.get(_cache_key(token_hash))
    if cached is not None:
        data = json.loads(cached)
        return data or None
    row = (
        AccessToken.objects.live().filter(token_hash=token_hash)
        .values("user_id", "client_id", "expires_at", "client__client_id", "client__name", "client__tenant_id",
                "client__role", "client__is_active", "client__tenant__status")
        .first()
    )
    if row is None or (row["client_id"] and not (row["client__is_active"] and row["client__tenant__status"] == "active")):
        client.set(_cache_key(token_hash), "{}", ex=settings.ACCESS_TOKEN_CACHE_SECONDS)
        return None
    data = {
        "kind": "client" if row["client_id"] else "user",
        "id": str(row["client_id"] or row["user_id"]),
        "expires": row["expires_at"].timestamp(),
    }
    if row["client_id"]:
        # A service client's principal is whole in the cache: no query per request. A suspended
        # tenant or disabled client takes effect within ACCESS_TOKEN_CACHE_SECONDS.
        data.update(client_id=row["client__client_id"], name=row["client__name"], tenant=row["client__tenant_id"],
                    role=row["client__role"])
    client.set(_cache_key(token_hash), json.dumps(data), ex=settings.ACCESS_TOKEN_CACHE_SECONDS)
    return data


def principal_for(token: str):
    """The user or ServicePrincipal an access token stands for, or None."""
    if not token.startswith(ACCESS_PREFIX):
        return None
    data = _lookup(token)
    if not data or data["expires"] <= timezone.now().timestamp():
        return None
    if data["kind"] == "user":
        return User.objects.filter(pk=data["id"], is_active=True).first()
    return ServicePrincipal(client_id=data["client_id"], pk=data["id"], name=data["name"],
                            tenant_id=data["tenant"], role=data["role"])


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer sya_...`. Other bearer credentials (API keys) are left to the
    next authentication class."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != self.keyword.lower().encode():
            return None
        try:
            token = header[1].decode()
        except UnicodeDecodeError:
            return None
        if not token.startswith(ACCESS_PREFIX):
            return None
        principal = principal_for(token)
        if principal is None:
            raise exceptions.AuthenticationFailed("The access token is not valid or has expired.")
        return principal, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
