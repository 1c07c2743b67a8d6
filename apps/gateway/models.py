"""Gateway data: API keys, model prices, the month-partitioned usage log and stored content."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from apps.core.models import TenantScopedQuerySet, TimestampedModel
from apps.keys.fields import EncryptedTextField

KEY_PREFIX_LIVE = "sy_live_"
KEY_PREFIX_SERVICE = "sy_svc_"


class ApiKey(TimestampedModel):
    """A credential for the data plane. Only the SHA-256 of the secret is kept; the full key is
    shown once, when it is created. A platform service key has no tenant and may act for any
    tenant by naming it (and a user) in the request body."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="api_keys"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="api_keys",
        help_text="The user the key's requests are attributed to.",
    )
    department = models.ForeignKey(
        "tenants.Department", on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys"
    )
    project = models.ForeignKey(
        "tenants.Project", on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys"
    )
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    is_platform_service = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    # Per-key limits; null leaves only the tenant's limit in force, 0 blocks the dimension.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    requests_per_day = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_platform_service=True, tenant__isnull=True)
                | models.Q(is_platform_service=False, tenant__isnull=False),
                name="apikey_service_keys_have_no_tenant",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return not self.is_revoked and not self.is_expired

    @property
    def status(self) -> str:
        if self.is_revoked:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"


class ModelPrice(TimestampedModel):
    """The price of a public model id from `effective_from` until the next row for that model.
    History is kept: a request is priced by the row in force at its own moment."""

    model = models.CharField(max_length=100)
    input_per_1k = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal("0"))])
    output_per_1k = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal("0"))])
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_per_model_and_moment"),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class UsageStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    CLIENT_ERROR = "client_error", "Refused (client error)"
    RATE_LIMITED = "rate_limited", "Refused (quota)"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    CANCELLED = "cancelled", "Client disconnected"
    ERROR = "error", "Gateway error"


class UsageRecord(models.Model):
    """One row per gateway request. The table is declared partitioned by month on created_at
    (migration 0002), so the primary key is (request_id, created_at) and Django does not manage
    it; writers insert with ON CONFLICT DO NOTHING so a retried write never counts twice."""

    pk = models.CompositePrimaryKey("request_id", "created_at")
    request_id = models.CharField(max_length=128)
    created_at = models.DateTimeField()
    tenant_id = models.CharField(max_length=63)
    api_key_id = models.UUIDField(null=True)
    user_id = models.BigIntegerField(null=True)
    department_id = models.BigIntegerField(null=True)
    project_id = models.BigIntegerField(null=True)
    model = models.CharField(max_length=100)
    deployment_id = models.UUIDField(null=True)
    region_id = models.CharField(max_length=63, blank=True, default="")
    endpoint = models.CharField(max_length=32, default="generate")
    stream = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=UsageStatus.choices)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, null=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    unpriced = models.BooleanField(default=False)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    tags = models.JSONField(default=dict)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant_id"

    class Meta:
        managed = False
        db_table = "gateway_usagerecord"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class StoredContent(models.Model):
    """A request's prompt and response, kept only when the tenant's settings say so: encrypted
    with the tenant's data key when it asks for encryption, else in the clear columns. Purged
    after the tenant's retention period."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    request_id = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(db_index=True)
    encrypted = models.BooleanField(default=True)
    prompt = EncryptedTextField(tenant_attr="tenant_id", null=True, blank=True)
    response = EncryptedTextField(tenant_attr="tenant_id", null=True, blank=True)
    prompt_clear = models.TextField(null=True, blank=True)
    response_clear = models.TextField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"content of {self.request_id}"

    @property
    def prompt_text(self) -> str | None:
        return self.prompt if self.encrypted else self.prompt_clear

    @property
    def response_text(self) -> str | None:
        return self.response if self.encrypted else self.response_clear
