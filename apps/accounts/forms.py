"""Console forms: sign-in, MFA codes, re-authentication, email change, identity providers."""

from __future__ import annotations

from django import forms
from django.contrib.auth.password_validation import validate_password

from .models import IdentityProvider, ProviderKind, User


class SignInForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}))
    password = forms.CharField(
        strip=False, required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Not needed when your organisation signs you in through its identity provider.",
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=32, label="Code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
        help_text="The 6-digit code from your authenticator app, or one of your recovery codes.",
    )


class ReauthForm(forms.Form):
    password = forms.CharField(strip=False, required=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    code = forms.CharField(max_length=32, required=False, label="Authenticator code",
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))


class EmailChangeForm(forms.Form):
    email = forms.EmailField(label="New email")

    def __init__(self, *args, user=None, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exclude(pk=self.user.pk).exists():
            raise forms.ValidationError("That email cannot be used.")
        return email


class SetPasswordForm(forms.Form):
    new_password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args, user=None, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_new_password(self):
        password = self.cleaned_data["new_password"]
        validate_password(password, self.user)
        return password


COMMON_FIELDS = ["kind", "name", "enabled", "email_domains", "jit_create_users", "default_role", "role_mapping", "trust_idp_mfa"]
KIND_FIELDS = {
    ProviderKind.SAML: ["saml_idp_entity_id", "saml_sso_url", "saml_slo_url", "saml_idp_x509_cert",
                        "saml_allow_idp_initiated", "saml_email_attribute", "saml_groups_attribute"],
    ProviderKind.OIDC: ["oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_scopes", "oidc_groups_claim"],
    ProviderKind.LDAP: ["ldap_server_uri", "ldap_start_tls", "ldap_ca_cert", "ldap_bind_dn", "ldap_bind_password", "ldap_user_search_base",
                        "ldap_user_filter", "ldap_group_search_base", "ldap_group_filter"],
}
SECRET_FIELDS = ("oidc_client_secret", "ldap_bind_password")


class CommaListField(forms.CharField):
    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value):
        return [part.strip().lower() for part in (value or "").split(",") if part.strip()]


class HttpsURLField(forms.URLField):
    """A URL typed without a scheme means https (an IdP endpoint is never plain http by default)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("assume_scheme", "https")
        super().__init__(**kwargs)


class IdentityProviderForm(forms.ModelForm):
    email_domains = CommaListField(required=False, help_text="Comma-separated, e.g. acme.com, acme.co.uk")
    saml_metadata_xml = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label="IdP metadata XML",
        help_text="Paste the IdP's metadata to fill in the SAML fields, or fill them in by hand.",
    )

    class Meta:
        model = IdentityProvider
        fields = COMMON_FIELDS + [f for fields in KIND_FIELDS.values() for f in fields]
        field_classes = {name: HttpsURLField for name in ("saml_sso_url", "saml_slo_url", "oidc_issuer")}
        widgets = {
            "oidc_client_secret": forms.PasswordInput(render_value=False),
            "ldap_bind_password": forms.PasswordInput(render_value=False),
            "saml_idp_x509_cert": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, tenant=None, **kwargs):
        self.tenant = tenant
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            self.fields[name].required = False
            if self.instance.pk:
                self.fields[name].help_text = "Leave blank to keep the stored secret."

    def clean_email_domains(self):
        domains = self.cleaned_data["email_domains"]
        taken = IdentityProvider.objects.filter(email_domains__overlap=domains or ["\x00"])
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if domains and taken.exists():
            raise forms.ValidationError("A domain here is already served by another identity provider.")
        return domains

    def clean_role_mapping(self):
        from apps.core.roles import Role

        mapping = self.cleaned_data.get("role_mapping") or {}
        if not isinstance(mapping, dict) or any(role not in Role.values for role in mapping.values()):
            raise forms.ValidationError(f"Map group names to one of: {', '.join(Role.values)}.")
        return mapping

    def clean(self):
        cleaned = super().clean()
        metadata = cleaned.get("saml_metadata_xml")
        if metadata:
            from .saml import parse_idp_metadata

            try:
                cleaned.update({k: v for k, v in parse_idp_metadata(metadata).items() if v})
            except Exception:
                self.add_error("saml_metadata_xml", "This is not readable SAML IdP metadata.")
        kind = cleaned.get("kind")
        required = {
            ProviderKind.SAML: ["saml_idp_entity_id", "saml_sso_url", "saml_idp_x509_cert"],
            ProviderKind.OIDC: ["oidc_issuer", "oidc_client_id"],
            ProviderKind.LDAP: ["ldap_server_uri", "ldap_user_search_base"],
        }.get(kind, [])
        for name in required:
            if not cleaned.get(name):
                self.add_error(name if name in self.fields else None, "This field is required for this kind of provider.")
        for name in SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                # Blank keeps what is stored.
                cleaned[name] = getattr(self.instance, name)
        return cleaned

    def _post_clean(self):
        if self.tenant is not None:
            self.instance.tenant = self.tenant
        super()._post_clean()
