"""Console forms of the gateway."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from apps.tenants.models import Department, Project


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="What uses this key, e.g. search-backend.")
    user = forms.ModelChoiceField(queryset=None, required=False, help_text="Requests are attributed to this member.")
    department = forms.ModelChoiceField(queryset=Department.objects.none(), required=False)
    project = forms.ModelChoiceField(queryset=Project.objects.none(), required=False)
    expires_at = forms.DateTimeField(required=False, help_text="UTC, e.g. 2027-01-31 00:00. Empty: never expires.")
    requests_per_minute = forms.IntegerField(min_value=0, required=False, help_text="Empty: the tenant's limit only.")
    requests_per_day = forms.IntegerField(min_value=0, required=False)
    tokens_per_month = forms.IntegerField(min_value=0, required=False)
    max_concurrent = forms.IntegerField(min_value=0, required=False)

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        from django.contrib.auth import get_user_model

        self.fields["user"].queryset = get_user_model().objects.filter(memberships__tenant=tenant).order_by("email")
        self.fields["department"].queryset = Department.objects.filter(tenant=tenant)
        self.fields["project"].queryset = Project.objects.filter(tenant=tenant)

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value
