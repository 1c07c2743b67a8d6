"""Keyrings, versioned data keys (wrapped by the KEK) and re-encryption jobs, keyed by tenant id."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TenantScopedQuerySet

# The platform keyring (shared deployments and other rows no tenant owns) is stored under the
# empty tenant id: tenant slugs are never empty, so it cannot collide with a tenant.
PLATFORM = ""


def keyring_id(tenant_id) -> str:
    return PLATFORM if tenant_id is None else str(tenant_id)


class KeyState(models.TextChoices):
    PRIMARY = "primary", "Primary"
    DECRYPT_ONLY = "decrypt_only", "Decrypt only"
    RETIRED = "retired", "Retired"
    DESTROYED = "destroyed", "Destroyed"


class Keyring(models.Model):
    """One per tenant (plus the platform's). A plain tenant id rather than a foreign key: the
    record that a tenant's keys were destroyed must outlive the tenant row."""

    tenant_id = models.CharField(max_length=63, unique=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    tenant_field = "tenant_id"
    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["tenant_id"]

    def __str__(self) -> str:
        return self.tenant_id or "platform"


class DataKey(models.Model):
    keyring = models.ForeignKey(Keyring, on_delete=models.CASCADE, related_name="versions")
    tenant_id = models.CharField(max_length=63, blank=True)
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=20, choices=KeyState.choices, default=KeyState.PRIMARY)
    # The data key wrapped by the KEK; emptied when the key is destroyed.
    wrapped_key = models.BinaryField(null=True, editable=False)
    kek_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    demoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    tenant_field = "tenant_id"
    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["tenant_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "version"], name="keys_datakey_version_unique"),
            models.UniqueConstraint(
                fields=["tenant_id"], condition=Q(state="primary"), name="keys_datakey_one_primary"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id or 'platform'} v{self.version} ({self.state})"

    def __repr__(self) -> str:
        # Never let the wrapped key reach a log line or a traceback.
        return f"<DataKey {self}>"


class JobStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class ReencryptionJob(models.Model):
    """Moves a tenant's rows onto its primary version. The cursor ({column label: last pk}) is
    saved in the same transaction as each batch, so a killed job resumes where it stopped."""

    tenant_id = models.CharField(max_length=63, blank=True)
    target_version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.RUNNING)
    cursor = models.JSONField(default=dict, blank=True)
    rows_reencrypted = models.PositiveBigIntegerField(default=0)
    rows_failed = models.PositiveBigIntegerField(default=0)
    runs = models.PositiveIntegerField(default=0, help_text="How many times the job was started or resumed.")
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    tenant_field = "tenant_id"
    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id"], condition=Q(status="running"), name="keys_one_running_job_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        return f"re-encrypt {self.tenant_id or 'platform'} to v{self.target_version} ({self.status})"
