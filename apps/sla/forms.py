"""Console forms: an SLA policy (units in every label) and a report request."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError

from .models import MeasurementWindow, SlaPolicy, validate_credit_schedule

PERCENT = {"min_value": Decimal("0"), "max_value": Decimal("100"), "decimal_places": 3, "max_digits": 6}


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=100)
    availability_target = forms.DecimalField(label="Availability target (%)", **PERCENT,
                                             help_text="e.g. 99.9: successes / (successes + server-side failures).")
    error_rate_max = forms.DecimalField(label="Maximum error rate (%)", required=False, **PERCENT,
                                        help_text="Server-side failures / all requests. Empty: not promised.")
    latency_p50_ms = forms.IntegerField(label="Latency p50 (ms)", required=False, min_value=1)
    latency_p95_ms = forms.IntegerField(label="Latency p95 (ms)", required=False, min_value=1)
    latency_p99_ms = forms.IntegerField(label="Latency p99 (ms)", required=False, min_value=1)
    response_time_ms = forms.IntegerField(label="Mean response time (ms)", required=False, min_value=1)
    throughput_min_tps = forms.DecimalField(label="Minimum throughput (output tokens/s)", required=False,
                                            min_value=Decimal("0.01"), max_digits=10, decimal_places=2)
    window = forms.ChoiceField(label="Measurement window", choices=MeasurementWindow.choices)
    credit_schedule = forms.CharField(
        label="Credit schedule", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One tier per line: availability % below which the credit applies, then the credit "
                  "(% of the month's bill), e.g. '99.9: 10' and '99: 25'.",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, instance_defaults: SlaPolicy | None = None, **kwargs):
        if instance_defaults is not None and not args and "data" not in kwargs:
            initial = {name: getattr(instance_defaults, name) for name in self.base_fields if name != "credit_schedule"}
            initial["credit_schedule"] = "\n".join(f"{t['below']}: {t['credit_percent']}"
                                                   for t in instance_defaults.credit_schedule or [])
            kwargs["initial"] = initial
        super().__init__(*args, **kwargs)

    def clean_credit_schedule(self):
        tiers = []
        for number, line in enumerate((self.cleaned_data.get("credit_schedule") or "").splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            below, sep, credit = line.partition(":")
            if not sep:
                raise ValidationError(f"Line {number}: write 'availability %: credit %', e.g. '99.9: 10'.")
            try:
                tiers.append({"below": str(Decimal(below.strip().rstrip("%"))),
                              "credit_percent": str(Decimal(credit.strip().rstrip("%")))})
            except InvalidOperation:
                raise ValidationError(f"Line {number}: both values must be numbers.") from None
        validate_credit_schedule(tiers)
        return tiers

    def clean(self):
        cleaned = super().clean()
        given = [(n, cleaned.get(n)) for n in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms") if cleaned.get(n)]
        for (_, lower), (name, higher) in zip(given, given[1:], strict=False):
            if higher < lower:
                self.add_error(name, "A higher percentile cannot have a lower latency target.")
        return cleaned

    def policy_fields(self) -> dict:
        return {name: self.cleaned_data.get(name) for name in self.fields}

    def add_validation_error(self, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        else:
            self.add_error(None, exc.messages)


class ReportForm(forms.Form):
    period_start = forms.DateField(label="From (UTC date)", widget=forms.DateInput(attrs={"type": "date"}))
    period_end = forms.DateField(label="To (UTC date, inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("period_start"), cleaned.get("period_end")
        if start and end and end < start:
            self.add_error("period_end", "The end date must not be before the start date.")
        return cleaned

    def period(self) -> dict:
        start = datetime.combine(self.cleaned_data["period_start"], time(0), tzinfo=UTC)
        end = datetime.combine(self.cleaned_data["period_end"], time(0), tzinfo=UTC) + timedelta(days=1)
        return {"start": start, "end": end}
