"""Tenants, their departments, projects and memberships, and resource pools and allocations."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from apps.core.models import TenantOwnedModel, TenantScopedQuerySet, TimestampedModel
from apps.core.roles import Role

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1 to 63 lower-case letters, digits and hyphens, starting and ending with a letter or digit.",
)


def not_reserved(value: str) -> None:
    if value in settings.RESERVED_TENANT_SLUGS:
        raise ValidationError(f"'{value}' is reserved; choose another id.")


class Tier(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class IsolationMode(models.TextChoices):
    STRICT = "strict", "Strict: dedicated deployments only"
    HYBRID = "hybrid", "Hybrid: dedicated first, shared pool as fallback"
    SHARED = "shared", "Shared pool"


class Residency(models.TextChoices):
    """A region group the tenant's traffic and data may live in."""

    ANY = "any", "Any region"
    US = "us", "United States"
    EU = "eu", "European Union"
    APAC = "apac", "Asia-Pacific"


class RedisOutageMode(models.TextChoices):
    FAIL_CLOSED = "fail_closed", "Fail closed (503) while quotas cannot be checked"
    DEGRADED = "degraded", "Degraded: admit within per-process limits while Redis is down"


class Tenant(TimestampedModel):
    id = models.CharField(
        primary_key=True, max_length=63, validators=[slug_validator, not_reserved],
        help_text="Permanent id, e.g. acme-corp.",
    )
    name = models.CharField(max_length=200)
    tier = models.CharField(max_length=20, choices=Tier.choices, default=Tier.PRO)
    status = models.CharField(max_length=20, choices=TenantStatus.choices, default=TenantStatus.ACTIVE)
    isolation_mode = models.CharField(max_length=20, choices=IsolationMode.choices, default=IsolationMode.SHARED)

    # Limits (0 blocks the dimension entirely).
    requests_per_minute = models.PositiveIntegerField(default=600, validators=[MaxValueValidator(10_000_000)])
    requests_per_day = models.PositiveIntegerField(default=100_000, validators=[MaxValueValidator(1_000_000_000)])
    tokens_per_month = models.PositiveBigIntegerField(default=10_000_000, validators=[MaxValueValidator(10**15)])
    max_concurrent = models.PositiveIntegerField(default=50, validators=[MaxValueValidator(100_000)])
    allowed_models = ArrayField(
        models.CharField(max_length=100), default=list, blank=True,
        help_text="Model ids this tenant may call; empty allows every model in the catalogue.",
    )

    # Settings.
    data_residency = models.CharField(max_length=10, choices=Residency.choices, default=Residency.ANY)
    store_content = models.BooleanField(default=False, help_text="Keep prompts and responses.")
    encrypt_content = models.BooleanField(default=True, help_text="Encrypt stored content with the tenant's data key.")
    retention_days = models.PositiveIntegerField(
        default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Days to keep usage content and audit events (1 to 3650).",
    )
    key_rotation_days = models.PositiveIntegerField(
        default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Rotate the tenant's data key after this many days.",
    )
    mfa_required = models.BooleanField(default=False, help_text="Require MFA of every user (always on for enterprise).")
    redis_outage_mode = models.CharField(
        max_length=20, choices=RedisOutageMode.choices, default=RedisOutageMode.FAIL_CLOSED
    )

    tenant_field = "pk"
    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE

    def allows_model(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models

    def clean(self):
        super().clean()
        if self.allowed_models:
            cleaned = [m.strip() for m in self.allowed_models if m and m.strip()]
            if len(set(cleaned)) != len(cleaned):
                raise ValidationError({"allowed_models": "A model is listed twice."})
            self.allowed_models = cleaned


class Department(TenantOwnedModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="departments")
    name = models.CharField(max_length=200)
    code = models.CharField(max_length=63, validators=[slug_validator], help_text="Short code used in reports, e.g. eng.")
    cost_center = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="department_code_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name


class Project(TenantOwnedModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="projects")
    department = models.ForeignKey(Department, on_delete=models.SET_NULL, null=True, blank=True, related_name="projects")
    name = models.CharField(max_length=200)
    code = models.CharField(max_length=63, validators=[slug_validator], help_text="Short code used in reports.")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="project_code_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        super().clean()
        if self.department_id and self.department.tenant_id != self.tenant_id:
            raise ValidationError({"department": "Choose a department of this tenant."})


class Membership(TenantOwnedModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    department = models.ForeignKey(Department, on_delete=models.SET_NULL, null=True, blank=True, related_name="members")

    class Meta:
        ordering = ["user__email"]
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_tenant")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} as {self.role}"

    def clean(self):
        super().clean()
        if self.department_id and self.department.tenant_id != self.tenant_id:
            raise ValidationError({"department": "Choose a department of this tenant."})


# Each allocatable resource: (field, label, unit).
RESOURCES: list[tuple[str, str, str]] = [
    ("cpu_millicores", "CPU", "millicores"),
    ("memory_mib", "memory", "MiB"),
    ("storage_gib", "storage", "GiB"),
    ("bandwidth_mbps", "bandwidth", "Mbps"),
]
RESOURCE_FIELDS = [field for field, _, _ in RESOURCES]


class ResourcePool(TimestampedModel):
    """A platform-wide pool of capacity that tenants reserve from."""

    name = models.CharField(max_length=100, unique=True)
    region = models.CharField(max_length=63, blank=True)
    cpu_millicores = models.PositiveBigIntegerField(help_text="Capacity in millicores.")
    memory_mib = models.PositiveBigIntegerField(help_text="Capacity in MiB.")
    storage_gib = models.PositiveBigIntegerField(help_text="Capacity in GiB.")
    bandwidth_mbps = models.PositiveBigIntegerField(help_text="Capacity in Mbps.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AllocationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RELEASED = "released", "Released"


class ResourceAllocation(TenantOwnedModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="allocations")
    pool = models.ForeignKey(ResourcePool, on_delete=models.PROTECT, related_name="allocations")
    cpu_millicores = models.PositiveBigIntegerField(default=0)
    memory_mib = models.PositiveBigIntegerField(default=0)
    storage_gib = models.PositiveBigIntegerField(default=0)
    bandwidth_mbps = models.PositiveBigIntegerField(default=0)
    purpose = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=AllocationStatus.choices, default=AllocationStatus.ACTIVE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["pool", "status"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} on {self.pool}"
