"""Users, their MFA devices and sessions, per-tenant identity providers, and API tokens."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.models import TenantOwnedModel, TenantScopedQuerySet, TimestampedModel
from apps.core.roles import Role
from apps.keys.fields import EncryptedTextField


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra):
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.update(is_staff=True, is_superuser=True, is_platform_admin=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May use the Django admin site.")
    is_platform_admin = models.BooleanField(default=False, help_text="Administers every tenant.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email

    def tenant_roles(self) -> dict[str, str]:
        """{tenant_id: role} for this user, read once per user object (one request)."""
        cached = getattr(self, "_tenant_roles", None)
        if cached is None:
            cached = {str(t): r for t, r in self.memberships.values_list("tenant_id", "role")}
            self._tenant_roles = cached
        return cached

    def forget_tenant_roles(self) -> None:
        self.__dict__.pop("_tenant_roles", None)
        self.__dict__.pop("_mfa_required", None)

    def mfa_required(self) -> bool:
        """MFA is mandatory for platform and tenant admins and for every user of an
        enterprise-tier tenant or of a tenant that asks for it."""
        cached = getattr(self, "_mfa_required", None)
        if cached is None:
            cached = bool(
                self.is_platform_admin
                or Role.TENANT_ADMIN in self.tenant_roles().values()
                or self.memberships.filter(Q(tenant__tier="enterprise") | Q(tenant__mfa_required=True)).exists()
            )
            self._mfa_required = cached
        return cached

    def has_confirmed_totp(self) -> bool:
        return TOTPDevice.objects.filter(user=self, confirmed_at__isnull=False).exists()


class TOTPDevice(TimestampedModel):
    """A user's authenticator app. Unconfirmed until the first code is entered at enrolment."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    # User secrets are not tenant data: they live under the platform keyring.
    secret = EncryptedTextField(tenant_attr=None)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last accepted 30-second time step: a code is refused at or before it (no replay).
    last_used_step = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"TOTP for {self.user_id}"


class RecoveryCode(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"recovery code of {self.user_id}"


class ProviderKind(models.TextChoices):
    SAML = "saml", "SAML 2.0"
    OIDC = "oidc", "OpenID Connect"
    LDAP = "ldap", "LDAP"


class IdentityProvider(TenantOwnedModel):
    """How a tenant's users sign in: one SAML IdP, OIDC provider or LDAP directory."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="identity_providers")
    kind = models.CharField(max_length=10, choices=ProviderKind.choices)
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    email_domains = ArrayField(
        models.CharField(max_length=253), default=list, blank=True,
        help_text="Users whose email is in one of these domains sign in through this provider.",
    )
    jit_create_users = models.BooleanField(default=True, help_text="Create a user on first sign-in.")
    default_role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER, blank=True,
                                    help_text="Role when no mapping matches; blank refuses such users.")
    role_mapping = models.JSONField(default=dict, blank=True,
                                    help_text='Group or attribute value to role, e.g. {"llm-admins": "tenant_admin"}.')
    trust_idp_mfa = models.BooleanField(default=True, help_text="Accept the IdP's MFA assertion (SAML AuthnContext / OIDC amr).")

    # SAML
    saml_idp_entity_id = models.CharField(max_length=500, blank=True)
    saml_sso_url = models.URLField(max_length=500, blank=True)
    saml_slo_url = models.URLField(max_length=500, blank=True)
    saml_idp_x509_cert = models.TextField(blank=True, help_text="The IdP's signing certificate (PEM).")
    saml_allow_idp_initiated = models.BooleanField(default=False)
    saml_email_attribute = models.CharField(max_length=200, blank=True, help_text="Blank: use the NameID.")
    saml_groups_attribute = models.CharField(max_length=200, blank=True, default="groups")

    # OIDC
    oidc_issuer = models.URLField(max_length=500, blank=True)
    oidc_client_id = models.CharField(max_length=300, blank=True)
    oidc_client_secret = EncryptedTextField(null=True, blank=True)
    oidc_scopes = models.CharField(max_length=300, blank=True, default="openid email profile")
    oidc_groups_claim = models.CharField(max_length=100, blank=True, default="groups")

    # LDAP
    ldap_server_uri = models.CharField(max_length=500, blank=True, help_text="ldap://host:389 or ldaps://host:636")
    ldap_start_tls = models.BooleanField(default=False)
    ldap_ca_cert = models.TextField(blank=True, help_text="PEM certificate(s) of the CA that signed the directory's "
                                    "TLS certificate; blank uses the system's trusted CAs.")
    ldap_bind_dn = models.CharField(max_length=500, blank=True)
    ldap_bind_password = EncryptedTextField(null=True, blank=True)
    ldap_user_search_base = models.CharField(max_length=500, blank=True)
    ldap_user_filter = models.CharField(max_length=500, blank=True, default="(mail=%(user)s)")
    ldap_group_search_base = models.CharField(max_length=500, blank=True)
    ldap_group_filter = models.CharField(max_length=500, blank=True, default="(objectClass=groupOfNames)")

    class Meta:
        ordering = ["tenant_id", "name"]
        indexes = [models.Index(fields=["kind", "enabled"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def role_for_groups(self, groups) -> str | None:
        """The strongest role any of the groups maps to, else the default role (None: refuse)."""
        order = [Role.TENANT_ADMIN, Role.MEMBER, Role.AUDITOR, Role.VIEWER]
        mapped = {self.role_mapping.get(g) for g in groups if g in self.role_mapping}
        for role in order:
            if role in mapped:
                return role
        return self.default_role or None


class UserSession(models.Model):
    """One signed-in browser session, listed to its owner and ended on request."""

    session_key = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_sessions")
    method = models.CharField(max_length=20, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [models.Index(fields=["user", "ended_at"])]

    def __str__(self) -> str:
        return f"session of {self.user_id} since {self.created_at:%Y-%m-%d %H:%M}"


class ServiceClient(TenantOwnedModel):
    """A machine identity of a tenant that gets access tokens by client credentials."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="service_clients")
    name = models.CharField(max_length=200)
    client_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TokenQuerySet(TenantScopedQuerySet):
    def live(self):
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())


class _Token(models.Model):
    token_hash = models.CharField(max_length=64, unique=True)
    family = models.UUIDField(db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    client = models.ForeignKey(ServiceClient, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    tenant_field = "tenant"
    objects = TokenQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{type(self).__name__} of family {self.family}"


class AccessToken(_Token):
    """A bearer token for the API, valid for an hour. Only its SHA-256 is stored."""


class RefreshToken(_Token):
    """Trades for a new access and refresh token once; a second use revokes the family."""

    used_at = models.DateTimeField(null=True, blank=True)
