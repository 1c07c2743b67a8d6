"""The audit search filters and the compliance period, shared by the console and the API."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms

from .models import Result
from .selectors import PLATFORM, EventFilters, auditable_tenant_ids


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FlexibleDateTimeField(forms.DateTimeField):
    """A date (midnight UTC) or an ISO date-time; naive values are UTC."""

    input_formats = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]

    def to_python(self, value):
        if isinstance(value, str) and value.strip():
            try:
                return _aware(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
            except ValueError:
                pass
        parsed = super().to_python(value)
        return _aware(parsed) if parsed else parsed


class EventFilterForm(forms.Form):
    tenant = forms.CharField(required=False, max_length=63)
    user = forms.CharField(required=False, max_length=254, help_text="Email or user id.")
    action = forms.CharField(required=False, max_length=100, help_text="Exact, or a prefix ending in * or '.'.")
    resource = forms.CharField(required=False, max_length=300, help_text="type or type:id")
    result = forms.ChoiceField(required=False, choices=[("", "Any")] + list(Result.choices))
    since = FlexibleDateTimeField(required=False, label="From")
    until = FlexibleDateTimeField(required=False, label="Until")
    q = forms.CharField(required=False, max_length=200, label="Search")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.allowed = auditable_tenant_ids(user)

    def clean_tenant(self):
        tenant = (self.cleaned_data.get("tenant") or "").strip()
        if not tenant:
            return None
        if self.allowed is None:
            return tenant
        if tenant == PLATFORM or tenant not in self.allowed:
            raise forms.ValidationError("You cannot audit this tenant.")
        return tenant

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until <= since:
            self.add_error("until", "Must be after From.")
        return data

    def filters(self) -> EventFilters:
        data = self.cleaned_data
        return EventFilters(**{name: data.get(name) or None for name in EventFilters.__dataclass_fields__})


class CompliancePeriodForm(forms.Form):
    since = FlexibleDateTimeField(required=False, label="From")
    until = FlexibleDateTimeField(required=False, label="Until")

    def clean(self):
        data = super().clean()
        until = data.get("until") or datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time.min, tzinfo=UTC)
        since = data.get("since") or until - timedelta(days=30)
        if until <= since:
            self.add_error("until", "Must be after From.")
        elif until - since > timedelta(days=3660):
            self.add_error("since", "A report covers at most ten years.")
        data["since"], data["until"] = since, until
        return data
