"""The tenant-scoped base model and queryset: scoping lives here and nowhere else."""

from django.db import models

from .roles import tenant_ids_for


class TenantScopedQuerySet(models.QuerySet):
    """`restrict(user, action)` is the one way every view, viewset and selector scopes a read."""

    def restrict(self, user, action: str = "view"):
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return self.none()
        if getattr(user, "is_platform_admin", False):
            return self
        field = getattr(self.model, "tenant_field", "tenant")
        return self.filter(**{f"{field}__in": tenant_ids_for(user, action)})

    def for_tenant(self, tenant_id):
        field = getattr(self.model, "tenant_field", "tenant")
        return self.filter(**{field: tenant_id})


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantOwnedModel(TimestampedModel):
    """A row that belongs to one tenant. `tenant_field` names the path to its tenant id."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    tenant_field = "tenant"

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        abstract = True


# --- Notification channels and quota violations ---------------------------------------------------
# Imported here, below the base classes: apps.keys' models import this module, and the encrypted
# field must exist before the models that use it.
import uuid  # noqa: E402

from django.contrib.postgres.fields import ArrayField  # noqa: E402

from apps.keys.fields import EncryptedTextField  # noqa: E402


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (JSON POST, HMAC-signed)"
    SLACK = "slack", "Slack-style incoming webhook"


class NotificationEvent(models.TextChoices):
    """What a channel may be sent; a channel with no events selected receives all of them."""

    QUOTA_VIOLATION = "quota.violation", "Quota violations"
    SLA_VIOLATION = "sla.violation", "SLA violations and burn-rate alerts"
    BUDGET = "budget.threshold", "Budget thresholds"
    FAILOVER = "region.failover", "Region failover and failback"
    REDIS_OUTAGE = "gateway.redis_outage", "Quota backend outages"
    TEST = "test", "Test messages"


class NotificationChannel(TenantOwnedModel):
    """Where a tenant's alerts go. The target (an address or a URL, which for Slack-style hooks
    is itself a credential) and the signing secret are encrypted with the tenant's data key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    name = models.CharField(max_length=100)
    target = EncryptedTextField(help_text="Email address, or the https:// URL to POST to.")
    secret = EncryptedTextField(
        null=True, blank=True,
        help_text="Webhooks: the key of the X-Switchyard-Signature HMAC-SHA256 header.",
    )
    enabled = models.BooleanField(default=True)
    events = ArrayField(
        models.CharField(max_length=40, choices=NotificationEvent.choices), default=list, blank=True,
        help_text="Events sent to this channel; none selected sends every event.",
    )
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=20, blank=True, default="")
    last_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="notification_channel_name_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def clean(self):
        super().clean()
        from django.core.exceptions import ValidationError
        from django.core.validators import EmailValidator, URLValidator

        target = (self.target or "").strip()
        self.target = target
        try:
            if self.kind == ChannelKind.EMAIL:
                EmailValidator(message="Enter a valid email address.")(target)
            else:
                URLValidator(schemes=["https", "http"], message="Enter a valid http(s) URL.")(target)
        except ValidationError as exc:
            raise ValidationError({"target": exc.messages}) from None
        if self.kind != ChannelKind.WEBHOOK and self.secret:
            raise ValidationError({"secret": "Only webhook channels sign their messages with a secret."})

    def wants(self, event: str) -> bool:
        return self.enabled and (not self.events or event in self.events or event == NotificationEvent.TEST)


class QuotaViolation(TenantOwnedModel):
    """Quota refusals of one tenant in one UTC minute, per limit and key: the gateway counts them
    in Redis on the hot path and a periodic task writes them here (count is absolute, so a
    repeated flush changes nothing)."""

    minute = models.DateTimeField(help_text="Start of the UTC minute.")
    scope = models.CharField(max_length=10, blank=True, default="", help_text="tenant or key: whose limit refused.")
    key_id = models.CharField(max_length=64, blank=True, default="", help_text="API key id, when a key made the request.")
    reason = models.CharField(max_length=40, help_text="The limit that refused, e.g. requests_per_minute.")
    limit = models.BigIntegerField(null=True, blank=True)
    count = models.PositiveIntegerField(default=0)
    last_request_id = models.CharField(max_length=128, blank=True, default="")
    audited = models.BooleanField(default=False, help_text="The minute's audit event has been written.")

    class Meta:
        ordering = ["-minute", "reason"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "minute", "scope", "key_id", "reason"],
                                    name="one_violation_row_per_minute_and_limit"),
        ]
        indexes = [models.Index(fields=["tenant", "-minute"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.reason} x{self.count} at {self.minute:%Y-%m-%d %H:%M}"
