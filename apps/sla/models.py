"""SLA policies, per-minute and per-hour metric rollups, compliance status, violations, alerts,
reports and the credits handed to billing."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.models import TenantScopedQuerySet, TimestampedModel
from apps.tenants.models import Tier


class MeasurementWindow(models.TextChoices):
    ROLLING_30D = "rolling_30d", "Rolling 30 days"
    CALENDAR_MONTH = "calendar_month", "Calendar month"


PERCENT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


def validate_credit_schedule(value) -> None:
    """A list of {"below": availability %, "credit_percent": % of the bill}, e.g.
    [{"below": "99.9", "credit_percent": "10"}, {"below": "99", "credit_percent": "25"}]."""
    if not isinstance(value, list):
        raise ValidationError("The credit schedule must be a list of tiers.")
    seen = set()
    for index, tier in enumerate(value, start=1):
        if not isinstance(tier, dict) or set(tier) != {"below", "credit_percent"}:
            raise ValidationError(f"Tier {index}: give exactly 'below' (availability %) and 'credit_percent'.")
        try:
            below = Decimal(str(tier["below"]))
            credit = Decimal(str(tier["credit_percent"]))
        except ArithmeticError:
            raise ValidationError(f"Tier {index}: 'below' and 'credit_percent' must be numbers.") from None
        if not below.is_finite() or not Decimal("0") < below <= Decimal("100"):
            raise ValidationError(f"Tier {index}: 'below' must be an availability between 0 and 100 %.")
        if not credit.is_finite() or not Decimal("0") < credit <= Decimal("100"):
            raise ValidationError(f"Tier {index}: 'credit_percent' must be between 0 and 100 %.")
        if below in seen:
            raise ValidationError(f"Tier {index}: two tiers start below {below} %.")
        seen.add(below)


class SlaPolicy(TimestampedModel):
    """The targets one tenant is promised. A row without a tenant is the default of its tier,
    used by every tenant of that tier that has no policy of its own. A null target is not promised."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.OneToOneField(
        "tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="sla_policy",
        help_text="Empty for a tier's default policy.",
    )
    tier = models.CharField(max_length=20, choices=Tier.choices, blank=True, default="",
                            help_text="For a default policy: the tier it applies to.")
    name = models.CharField(max_length=100, default="Standard SLA")
    availability_target = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal("99.9"), validators=PERCENT,
        help_text="Availability in %: successful requests / (successes + server-side failures).",
    )
    error_rate_max = models.DecimalField(
        max_digits=6, decimal_places=3, null=True, blank=True, default=Decimal("1.0"), validators=PERCENT,
        help_text="Highest error rate in %: server-side failures / all requests.",
    )
    latency_p50_ms = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                 help_text="Median latency target in milliseconds.")
    latency_p95_ms = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                 help_text="95th percentile latency target in milliseconds.")
    latency_p99_ms = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                 help_text="99th percentile latency target in milliseconds.")
    response_time_ms = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                   help_text="Highest mean response time in milliseconds.")
    throughput_min_tps = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Lowest output throughput in tokens per second (completion tokens / request time).",
    )
    window = models.CharField(max_length=20, choices=MeasurementWindow.choices, default=MeasurementWindow.ROLLING_30D)
    credit_schedule = models.JSONField(
        default=list, blank=True, validators=[validate_credit_schedule],
        help_text='Service credits by monthly availability, e.g. [{"below": "99.9", "credit_percent": "10"}].',
    )
    enabled = models.BooleanField(default=True)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["tenant_id", "tier"]
        constraints = [
            models.UniqueConstraint(fields=["tier"], condition=models.Q(tenant__isnull=True),
                                    name="one_default_sla_policy_per_tier"),
            models.CheckConstraint(condition=models.Q(tenant__isnull=False) | ~models.Q(tier=""),
                                   name="default_sla_policy_names_its_tier"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant_id or 'default ' + self.tier})"

    def clean(self):
        super().clean()
        latencies = [("latency_p50_ms", self.latency_p50_ms), ("latency_p95_ms", self.latency_p95_ms),
                     ("latency_p99_ms", self.latency_p99_ms)]
        given = [(name, value) for name, value in latencies if value]
        for (_, lower), (name, higher) in zip(given, given[1:], strict=False):
            if higher < lower:
                raise ValidationError({name: "A higher percentile cannot have a lower latency target."})
        if self.tenant_id is None and not self.tier:
            raise ValidationError({"tier": "A default policy must name the tier it applies to."})

    def credit_tiers(self) -> list[tuple[Decimal, Decimal]]:
        """(below, credit %) from the strictest threshold down, so the first match is the largest credit."""
        tiers = [(Decimal(str(t["below"])), Decimal(str(t["credit_percent"]))) for t in self.credit_schedule or []]
        return sorted(tiers, key=lambda t: t[0])

    def targets(self) -> dict[str, Decimal | int | None]:
        return {
            "availability": self.availability_target,
            "error_rate": self.error_rate_max,
            "latency_p50": self.latency_p50_ms,
            "latency_p95": self.latency_p95_ms,
            "latency_p99": self.latency_p99_ms,
            "response_time": self.response_time_ms,
            "throughput": self.throughput_min_tps,
        }


class RollupCounters(models.Model):
    """Counters over one bucket of time. The latency histogram is sparse: hist_buckets[i] is a log
    bucket index (see apps.sla.histogram) holding hist_counts[i] successful requests."""

    tenant_id = models.CharField(max_length=63)
    requests = models.IntegerField(default=0)
    successes = models.IntegerField(default=0)
    client_errors = models.IntegerField(default=0)
    rate_limited = models.IntegerField(default=0)
    upstream_errors = models.IntegerField(default=0)
    gateway_errors = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=8, default=Decimal("0"))
    unpriced = models.IntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0.0, help_text="Sum of latencies of successful requests.")
    hist_buckets = ArrayField(models.SmallIntegerField(), default=list)
    hist_counts = ArrayField(models.IntegerField(), default=list)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant_id"

    class Meta:
        abstract = True


class RollupBase(RollupCounters):
    """Counters of one tenant, model and deployment."""

    model = models.CharField(max_length=100)
    deployment_id = models.CharField(max_length=36, blank=True, default="")

    class Meta:
        abstract = True


class MinuteRollup(RollupBase):
    minute = models.DateTimeField(help_text="Start of the UTC minute.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "model", "deployment_id", "minute"],
                                               name="one_minute_rollup_per_key")]
        # No index on the time alone: the planner preferred it to (tenant_id, minute) and read every
        # tenant's rows of the window; every query names its tenants instead.
        indexes = [models.Index(fields=["tenant_id", "minute"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.model} {self.minute:%Y-%m-%d %H:%M}"


class HourRollup(RollupBase):
    hour = models.DateTimeField(help_text="Start of the UTC hour.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "model", "deployment_id", "hour"],
                                               name="one_hour_rollup_per_key")]
        indexes = [models.Index(fields=["tenant_id", "hour"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.model} {self.hour:%Y-%m-%d %H:00}"


class TenantHourRollup(RollupCounters):
    """One tenant's hour over every model and deployment, with its percentiles already picked (as
    histogram bucket indexes): the hourly trend of a dashboard reads one row per hour."""

    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    p50_bucket = models.SmallIntegerField(null=True, blank=True)
    p95_bucket = models.SmallIntegerField(null=True, blank=True)
    p99_bucket = models.SmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "hour"], name="one_tenant_hour_rollup")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour:%Y-%m-%d %H:00}"


class SlaStatus(models.Model):
    """A tenant's compliance as of the last evaluation (every minute): what the fleet view reads."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, primary_key=True,
                                  related_name="sla_status")
    policy = models.ForeignKey(SlaPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    evaluated_at = models.DateTimeField()
    compliant = models.BooleanField(default=True)
    open_violations = models.PositiveIntegerField(default=0)
    availability = models.FloatField(null=True, blank=True, help_text="% over the policy window.")
    budget_remaining = models.FloatField(null=True, blank=True, help_text="% of the error budget left.")
    burn_rate_1h = models.FloatField(null=True, blank=True)
    requests = models.BigIntegerField(default=0)
    data = models.JSONField(default=dict, help_text="The whole evaluation, as shown on the dashboard.")

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    def __str__(self) -> str:
        return f"{self.tenant_id} {'compliant' if self.compliant else 'in breach'}"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class SlaViolation(TimestampedModel):
    """One target missed over one period ('window' or 'month'), open until the metric recovers."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(SlaPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    metric = models.CharField(max_length=30)
    period = models.CharField(max_length=10, help_text="window (the policy window) or month (month to date).")
    unit = models.CharField(max_length=10)
    expected = models.DecimalField(max_digits=14, decimal_places=3)
    actual = models.DecimalField(max_digits=14, decimal_places=3)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "metric", "period"],
                                               condition=models.Q(resolved_at__isnull=True),
                                               name="one_open_sla_violation_per_metric")]
        indexes = [models.Index(fields=["tenant", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.metric} {self.actual} vs {self.expected}"


class AlertState(models.Model):
    """The state machine of one alert rule for one tenant: ok -> firing -> ok. A transition is
    what sends a notification, so a firing alert is sent once and its recovery once."""

    OK = "ok"
    FIRING = "firing"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    rule = models.CharField(max_length=40)
    state = models.CharField(max_length=10, default=OK)
    since = models.DateTimeField()
    last_evaluated_at = models.DateTimeField()
    last_values = models.JSONField(default=dict)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "rule"], name="one_alert_state_per_rule")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.rule} {self.state}"


class AlertEvent(models.Model):
    """Alert history: each firing and each recovery, as sent to the tenant's channels."""

    FIRING = "firing"
    RESOLVED = "resolved"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    rule = models.CharField(max_length=40)
    kind = models.CharField(max_length=10)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    title = models.CharField(max_length=200)
    message = models.TextField()
    values = models.JSONField(default=dict)
    channels = models.PositiveIntegerField(default=0, help_text="Channels the notification was sent to.")
    created_at = models.DateTimeField()

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.rule} {self.kind}"


class ReportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class SlaReport(models.Model):
    """An SLA report of one tenant and period, as a PDF and a CSV under MEDIA_ROOT/sla-reports/."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    monthly = models.BooleanField(default=False, help_text="Made by the monthly schedule (else on demand).")
    status = models.CharField(max_length=10, choices=ReportStatus.choices, default=ReportStatus.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    pdf_path = models.CharField(max_length=300, blank=True, default="")
    csv_path = models.CharField(max_length=300, blank=True, default="")
    summary = models.JSONField(default=dict)
    error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start", "period_end"],
                                               condition=models.Q(monthly=True), name="one_monthly_sla_report")]

    def __str__(self) -> str:
        return f"SLA report {self.tenant_id} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"


class SlaCredit(models.Model):
    """The service credit a tenant earned for one period under one policy: what billing reads."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(SlaPolicy, on_delete=models.PROTECT, related_name="credits")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    credit_percent = models.DecimalField(max_digits=6, decimal_places=3,
                                         help_text="% of the period's bill to credit.")
    metric = models.CharField(max_length=30, default="availability")
    expected = models.DecimalField(max_digits=14, decimal_places=3, help_text="The threshold that was missed (%).")
    actual = models.DecimalField(max_digits=14, decimal_places=3, help_text="The measured availability (%).")
    requests = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField()

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-period_start"]
        constraints = [models.UniqueConstraint(fields=["tenant", "policy", "period_start", "period_end"],
                                               name="one_sla_credit_per_period")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.credit_percent}% for {self.period_start:%Y-%m}"
