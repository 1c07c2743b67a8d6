"""Regions (grouped for data residency) and deployments: a model served by a provider endpoint in a region."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from apps.core.models import TenantScopedQuerySet, TimestampedModel
from apps.keys.fields import EncryptedTextField
from apps.tenants.models import Residency, Tenant, slug_validator

# A region belongs to exactly one residency group; "any" is a tenant setting, never a region's group.
REGION_GROUPS = [(value, label) for value, label in Residency.choices if value != Residency.ANY]


class Region(TimestampedModel):
    id = models.CharField(
        primary_key=True, max_length=63, validators=[slug_validator], help_text="Permanent id, e.g. us-east."
    )
    name = models.CharField(max_length=200)
    group = models.CharField(
        max_length=10, choices=REGION_GROUPS, help_text="The residency group this region satisfies."
    )
    enabled = models.BooleanField(default=True, help_text="A disabled region takes no traffic.")

    class Meta:
        ordering = ["group", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class ProviderKind(models.TextChoices):
    """Upstream API kinds; the gateway registers one adapter per kind (apps/gateway/providers)."""

    OPENAI = "openai", "OpenAI-compatible (OpenAI, Azure, vLLM, Ollama, llama.cpp)"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    SIMULATOR = "simulator", "Switchyard simulator"


class DeploymentQuerySet(TenantScopedQuerySet):
    def routable(self):
        """Enabled deployments in enabled regions: what the router may pick from."""
        return self.filter(enabled=True, region__enabled=True).select_related("region")


class Deployment(TimestampedModel):
    """`tenant` empty = the shared pool; set = dedicated to that tenant. Credentials are encrypted with the
    owning tenant's data key (the platform keyring for shared deployments)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    model = models.CharField(max_length=100, help_text="The public model id clients ask for, e.g. gpt-4o-mini.")
    provider = models.CharField(max_length=30, choices=ProviderKind.choices, default=ProviderKind.OPENAI)
    upstream_model = models.CharField(
        max_length=200, blank=True, help_text="The model name the upstream expects; empty means the same as model."
    )
    base_url = models.CharField(
        max_length=500,
        help_text="API root: https://api.openai.com/v1, https://api.anthropic.com, or a simulator's http://host:port.",
    )
    api_key = EncryptedTextField(tenant_attr="tenant_id", null=True, blank=True)
    extra_headers = models.JSONField(
        default=dict, blank=True,
        help_text='Extra request headers, e.g. {"api-key": "{api_key}"} for Azure ({api_key} is replaced by the key).',
    )
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="deployments")
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="deployments",
        help_text="Dedicated to this tenant; empty for the shared pool.",
    )
    priority = models.PositiveSmallIntegerField(
        default=100, validators=[MaxValueValidator(10000)], help_text="Lower is tried first."
    )
    timeout_seconds = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="Longest wait for an answer (for a stream: the longest silence).",
    )
    enabled = models.BooleanField(default=True)

    tenant_field = "tenant"
    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["model", "priority", "name"]
        indexes = [models.Index(fields=["model", "enabled"])]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="deployment_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model} in {self.region_id})"

    @property
    def is_shared(self) -> bool:
        return self.tenant_id is None

    @property
    def effective_upstream_model(self) -> str:
        return self.upstream_model or self.model

    def clean(self):
        super().clean()
        errors = {}
        try:
            URLValidator(schemes=["http", "https"])(self.base_url or "")
        except ValidationError:
            errors["base_url"] = "Enter an http:// or https:// URL."
        if not isinstance(self.extra_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in (self.extra_headers or {}).items()
        ):
            errors["extra_headers"] = "Give a JSON object of header names to string values."
        if self.tenant_id and self.region_id:
            tenant = self.tenant
            region = self.region
            if tenant.data_residency != Residency.ANY and region.group != tenant.data_residency:
                errors["region"] = (
                    f"{tenant.name} keeps its traffic in {tenant.get_data_residency_display()}; "
                    f"{region.id} is in {region.get_group_display()}."
                )
        if errors:
            raise ValidationError(errors)


# --- Active health history, failover policy and events (healthchecks.py, failover.py) ------------------------

class HealthCheckRollup(models.Model):
    """Active probes of one deployment in one UTC minute: counts and latency, added to by every probe."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="health_rollups")
    minute = models.DateTimeField()
    checks = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    latency_ms_max = models.FloatField(default=0)

    class Meta:
        ordering = ["-minute"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "minute"], name="health_rollup_one_per_minute"),
        ]
        indexes = [models.Index(fields=["minute"])]

    def __str__(self) -> str:
        return f"{self.deployment_id} at {self.minute:%Y-%m-%d %H:%M}: {self.failures}/{self.checks} failed"

    @property
    def latency_ms_avg(self) -> float:
        return round(self.latency_ms_sum / self.checks, 2) if self.checks else 0.0


class FailoverPolicy(TimestampedModel):
    """Where a model's traffic should run (the primary region) and where it runs now (the active one)."""

    model = models.CharField(primary_key=True, max_length=100, help_text="The public model id, e.g. gpt-4o-mini.")
    primary_region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="primary_for")
    active_region = models.ForeignKey(
        Region, on_delete=models.PROTECT, related_name="active_for", null=True, blank=True,
        help_text="Where traffic runs now; empty until the first evaluation (then the primary).",
    )
    failback_after_seconds = models.PositiveIntegerField(
        default=120, validators=[MinValueValidator(0), MaxValueValidator(86400)],
        help_text="How long the primary must stay healthy before traffic returns to it.",
    )
    enabled = models.BooleanField(default=True)
    primary_healthy_since = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["model"]
        verbose_name_plural = "failover policies"

    def __str__(self) -> str:
        return f"{self.model}: primary {self.primary_region_id}, active {self.active_region_id or '-'}"

    @property
    def failed_over(self) -> bool:
        return bool(self.active_region_id) and self.active_region_id != self.primary_region_id


class FailoverKind(models.TextChoices):
    FAILOVER = "failover", "Failover"
    FAILBACK = "failback", "Failback"


class FailoverEvent(models.Model):
    """One move of a model's traffic between regions, with what the redirect hooks answered."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    model = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=10, choices=FailoverKind.choices)
    from_region = models.CharField(max_length=63, blank=True)
    to_region = models.CharField(max_length=63, blank=True, help_text="Empty when no healthy region was left.")
    reason = models.CharField(max_length=500)
    hook_results = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.model}: {self.from_region} -> {self.to_region or 'none'}"
