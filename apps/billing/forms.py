"""Console forms: a model price, a budget, closing a period, and a credit note."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from apps.tenants.models import Department, Project

from .models import BudgetPeriod, BudgetScope

MONEY = {"max_digits": 14, "decimal_places": 2, "min_value": Decimal("0")}


class PriceForm(forms.Form):
    model = forms.CharField(max_length=100, help_text="The public model id, e.g. gpt-4o-mini.")
    input_per_1k = forms.DecimalField(label="Input price per 1k tokens", max_digits=12, decimal_places=6,
                                      min_value=Decimal("0"))
    output_per_1k = forms.DecimalField(label="Output price per 1k tokens", max_digits=12, decimal_places=6,
                                       min_value=Decimal("0"))
    currency = forms.CharField(max_length=3, initial="USD")
    effective_from = forms.DateTimeField(
        required=False, help_text="UTC, e.g. 2026-12-01 00:00. Empty: now. A change never applies to the past.",
        widget=forms.DateTimeInput(attrs={"placeholder": "YYYY-MM-DD HH:MM"}))


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(choices=BudgetScope.choices)
    department = forms.ModelChoiceField(queryset=Department.objects.none(), required=False)
    project = forms.ModelChoiceField(queryset=Project.objects.none(), required=False)
    amount = forms.DecimalField(**MONEY)
    currency = forms.CharField(max_length=3, initial="USD")
    period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTH)
    hard_limit = forms.BooleanField(required=False, help_text="Refuse requests (429) that would exceed the budget.")

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = Department.objects.filter(tenant=tenant)
        self.fields["project"].queryset = Project.objects.filter(tenant=tenant)


class IssueForm(forms.Form):
    period = forms.RegexField(regex=r"^\d{4}-\d{2}$", help_text="The month to close, YYYY-MM.",
                              error_messages={"invalid": "Give the period as YYYY-MM, e.g. 2026-10."})


class CreditNoteForm(forms.Form):
    amount = forms.DecimalField(max_digits=16, decimal_places=2, min_value=Decimal("0.01"))
    reason = forms.CharField(max_length=300)
