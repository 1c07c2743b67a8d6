"""Console forms of the keys app."""

from django import forms


class RotateKeyForm(forms.Form):
    reason = forms.CharField(
        max_length=100, required=False, initial="manual",
        help_text="Recorded in the audit trail, e.g. 'suspected exposure' or 'staff change'.",
    )

    def clean_reason(self):
        return self.cleaned_data["reason"].strip() or "manual"
