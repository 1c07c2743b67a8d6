"""Console forms for regions and deployments."""

from __future__ import annotations

import json

from django import forms

from apps.tenants.models import Tenant

from .models import Deployment, Region


class RegionForm(forms.ModelForm):
    class Meta:
        model = Region
        fields = ["id", "name", "group", "enabled"]
        labels = {"id": "Region id"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and not self.instance._state.adding:
            self.fields["id"].disabled = True

    def validate_unique(self):
        # Uniqueness of the id is the service's job (it answers with a field message).
        pass


class HeadersField(forms.CharField):
    """A JSON object of header names to string values, typed as text."""

    widget = forms.Textarea(attrs={"rows": 2, "class": "mono"})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return json.dumps(value) if value else ""
        return value

    def to_python(self, value):
        text = (super().to_python(value) or "").strip()
        if not text:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise forms.ValidationError('Give a JSON object of header names to string values, e.g. {"api-key": "{api_key}"}.')
        return data


class DeploymentForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False, strip=True, max_length=4000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. On edit, leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    extra_headers = HeadersField(
        required=False,
        help_text='Optional JSON, e.g. {"api-key": "{api_key}"} for Azure; {api_key} is replaced by the key.',
    )
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.all(), required=False, empty_label="Shared pool (any tenant)",
        help_text="Dedicate the deployment to one tenant, or leave it in the shared pool.",
    )

    class Meta:
        model = Deployment
        fields = [
            "name", "model", "provider", "upstream_model", "base_url", "region", "tenant", "priority",
            "timeout_seconds", "enabled", "extra_headers",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = bool(self.instance and not self.instance._state.adding)
        if not self.editing:
            del self.fields["clear_api_key"]
        else:
            # Show only whether a key is stored; reading the attribute would decrypt it for nothing.
            stored = self.instance.__dict__.get("api_key") is not None
            self.fields["api_key"].help_text = (
                ("A key is stored. " if stored else "No key is stored. ")
                + "Leave empty to keep it; type a new one to replace it."
            )

    def _post_clean(self):
        # Model validation runs in the service (with the credential), not on a half-built instance.
        pass

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        api_key = data.pop("api_key", "")
        clear = data.pop("clear_api_key", False)
        if not self.editing:
            return {**data, "api_key": api_key or None}
        if clear:
            return {**data, "api_key": None}
        if api_key:
            return {**data, "api_key": api_key}
        return data
