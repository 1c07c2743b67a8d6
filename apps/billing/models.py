"""Billing data: budgets and their alerts, the invoice number sequence, invoices and their lines.

Money is Decimal. Usage costs are stored per record with 8 decimal places (apps.gateway); billing
sums them at full precision and rounds once, to the cent with ROUND_HALF_UP, per invoice line
(see apps.billing.money). Issued invoices and credit notes never change: the model refuses to
save or delete one, and a database trigger refuses any UPDATE of their rows.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from apps.core.models import TenantOwnedModel, TenantScopedQuerySet


class BudgetScope(models.TextChoices):
    TENANT = "tenant", "Whole tenant"
    DEPARTMENT = "department", "Department"
    PROJECT = "project", "Project"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Per UTC day"
    MONTH = "month", "Per UTC calendar month"


ALERT_THRESHOLDS = (50, 80, 100)


class Budget(TenantOwnedModel):
    """A spending budget of a tenant, or of one of its departments or projects, per period. With
    `hard_limit` the gateway refuses requests that would pass it (pushed to Redis by services)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope = models.CharField(max_length=20, choices=BudgetScope.choices, default=BudgetScope.TENANT)
    department = models.ForeignKey("tenants.Department", on_delete=models.CASCADE, null=True, blank=True,
                                   related_name="+")
    project = models.ForeignKey("tenants.Project", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    currency = models.CharField(max_length=3, default="USD")
    period = models.CharField(max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    hard_limit = models.BooleanField(default=False, help_text="Refuse requests that would exceed the budget.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["scope", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "scope", "department", "project"], nulls_distinct=False,
                                    name="one_budget_per_scope"),
            models.CheckConstraint(
                condition=models.Q(scope="tenant", department__isnull=True, project__isnull=True)
                | models.Q(scope="department", department__isnull=False, project__isnull=True)
                | models.Q(scope="project", department__isnull=True, project__isnull=False),
                name="budget_scope_matches_its_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope_label}: {self.amount} {self.currency} per {self.period}"

    @property
    def scope_id(self) -> str:
        if self.scope == BudgetScope.DEPARTMENT:
            return str(self.department_id)
        if self.scope == BudgetScope.PROJECT:
            return str(self.project_id)
        return str(self.tenant_id)

    @property
    def scope_label(self) -> str:
        if self.scope == BudgetScope.DEPARTMENT and self.department is not None:
            return f"Department {self.department.code}"
        if self.scope == BudgetScope.PROJECT and self.project is not None:
            return f"Project {self.project.code}"
        return "Tenant"


class BudgetAlert(models.Model):
    """One threshold crossed in one budget period: the row is the de-duplication (sent once)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(max_digits=20, decimal_places=8)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant"

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["budget", "period_start", "threshold"],
                                               name="one_alert_per_budget_period_threshold")]

    def __str__(self) -> str:
        return f"{self.threshold}% of budget {self.budget_id} from {self.period_start:%Y-%m-%d}"


class InvoiceSequence(models.Model):
    """The last invoice number issued in a year; taken under a row lock, so numbers have no gaps."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class InvoiceKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    CREDIT_NOTE = "credit_note", "Credit note"


class ImmutableError(ValidationError):
    pass


class Invoice(TenantOwnedModel):
    """An issued invoice (or credit note) for one tenant, period and currency. Never changes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=20, unique=True)
    kind = models.CharField(max_length=20, choices=InvoiceKind.choices, default=InvoiceKind.INVOICE)
    corrects = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=16, decimal_places=2, help_text="Sum of the rounded usage lines.")
    credits = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"),
                                  help_text="SLA credits (a positive amount, subtracted).")
    total = models.DecimalField(max_digits=16, decimal_places=2, help_text="Net due: subtotal - credits.")
    usage_cost = models.DecimalField(max_digits=24, decimal_places=8,
                                     help_text="The period's usage cost at full precision, before rounding.")
    requests = models.BigIntegerField(default=0)
    unpriced_requests = models.BigIntegerField(default=0, help_text="Successful requests with no price: not billed.")
    reason = models.CharField(max_length=300, blank=True, default="", help_text="Why a credit note was issued.")
    issued_at = models.DateTimeField()
    issued_by = models.CharField(max_length=200, blank=True, default="", help_text="User email, or 'system'.")

    class Meta:
        ordering = ["-period_start", "-issued_at"]
        constraints = [
            # One invoice per tenant, period and currency: the monthly run is idempotent on this.
            models.UniqueConstraint(fields=["tenant", "period_start", "currency"],
                                    condition=models.Q(kind="invoice"), name="one_invoice_per_tenant_period_currency"),
        ]
        indexes = [models.Index(fields=["tenant", "-period_start"])]

    def __str__(self) -> str:
        return self.number

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableError("An issued invoice never changes; issue a credit note instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("An issued invoice cannot be deleted; issue a credit note instead.")


class LineKind(models.TextChoices):
    USAGE = "usage", "Usage"
    CREDIT = "credit", "SLA credit"
    CORRECTION = "correction", "Correction"


class InvoiceLine(models.Model):
    """One line: usage of one model by one department (amount rounded once, here), or a credit."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=LineKind.choices, default=LineKind.USAGE)
    model = models.CharField(max_length=100, blank=True, default="")
    department_id = models.BigIntegerField(null=True, blank=True)
    description = models.CharField(max_length=300)
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=24, decimal_places=8, help_text="Unrounded sum of the records' costs.")
    amount = models.DecimalField(max_digits=16, decimal_places=2, help_text="Rounded to the cent (ROUND_HALF_UP).")

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="one_line_per_position")]

    def __str__(self) -> str:
        return f"{self.invoice_id} #{self.position}: {self.amount}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableError("Lines of an issued invoice never change.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("Lines of an issued invoice cannot be deleted.")



class UsageRollup(models.Model):
    """Usage per tenant, UTC day and attribution (currency, model, department, project, user, API
    key): what allocation and chargeback read instead of the raw log. Sums are exact (costs keep
    their 8 places). Rebuilt per day from the usage records by services.rollup_usage, so a rerun
    (or a late record) simply replaces the day's rows."""

    tenant_id = models.CharField(max_length=63)
    day = models.DateField()
    currency = models.CharField(max_length=3, blank=True, default="")
    model = models.CharField(max_length=100)
    department_id = models.BigIntegerField(null=True)
    project_id = models.BigIntegerField(null=True)
    user_id = models.BigIntegerField(null=True)
    api_key_id = models.UUIDField(null=True)
    requests = models.BigIntegerField(default=0, help_text="Priced requests.")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=24, decimal_places=8, default=Decimal("0"))
    unpriced_requests = models.BigIntegerField(default=0)

    objects = TenantScopedQuerySet.as_manager()
    tenant_field = "tenant_id"

    class Meta:
        indexes = [models.Index(fields=["tenant_id", "day"]), models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.model}: {self.cost}"


class RollupState(models.Model):
    """How far the daily rollups are final: every day before `complete_until` is rolled up;
    readers take later usage from the raw records."""

    name = models.CharField(max_length=20, primary_key=True, default="usage")
    complete_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} until {self.complete_until:%Y-%m-%d}"
