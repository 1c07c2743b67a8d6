"""The export options form: where the outer gateway forwards traffic, sends logs and finds tenants' JWT keys."""

from __future__ import annotations

from django import forms

from .exports import ExportOptions


class ExportOptionsForm(forms.Form):
    upstream_url = forms.URLField(max_length=500, assume_scheme="https",
                                  help_text="Switchyard's address as the outer gateway reaches it.")
    log_endpoint = forms.URLField(max_length=500, assume_scheme="https",
                                  help_text="Where the gateway sends its request logs (Kong http-log, Apigee callout).")
    jwks_url = forms.URLField(max_length=500, assume_scheme="https",
                              help_text="The JWKS the edge verifies tenants' JWTs against (Apigee).")

    @classmethod
    def with_defaults(cls, data=None):
        defaults = ExportOptions.defaults()
        initial = {"upstream_url": defaults.upstream_url, "log_endpoint": defaults.log_endpoint,
                   "jwks_url": defaults.jwks_url}
        if data is not None:
            merged = {**initial, **{k: v for k, v in data.items() if k in initial and v}}
            return cls(merged)
        return cls(initial=initial)

    def options(self) -> ExportOptions:
        data = self.cleaned_data
        return ExportOptions(upstream_url=data["upstream_url"].rstrip("/"), log_endpoint=data["log_endpoint"],
                             jwks_url=data["jwks_url"])
