"""Console forms for tenants, departments, projects, members and allocations."""

from __future__ import annotations

from django import forms

from apps.core.roles import Role

from .models import RESOURCES, Department, Project, ResourcePool, Tenant
from .services import PLATFORM_ONLY_FIELDS


class CommaListField(forms.CharField):
    """A list of strings typed as comma-separated text."""

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return ", ".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [item.strip() for item in text.split(",") if item.strip()]


class TenantForm(forms.ModelForm):
    allowed_models = CommaListField(
        required=False, help_text="Comma-separated model ids; leave empty to allow every model.",
    )

    class Meta:
        model = Tenant
        fields = [
            "id", "name", "tier", "status", "isolation_mode",
            "requests_per_minute", "requests_per_day", "tokens_per_month", "max_concurrent", "allowed_models",
            "data_residency", "store_content", "encrypt_content", "retention_days", "key_rotation_days",
            "mfa_required", "redis_outage_mode",
        ]
        labels = {"id": "Tenant id"}

    def __init__(self, *args, platform_admin: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and self.instance._state.adding is False:
            del self.fields["id"]
        if not platform_admin:
            for name in list(self.fields):
                if name in PLATFORM_ONLY_FIELDS:
                    del self.fields[name]

    def clean_id(self):
        value = self.cleaned_data["id"].strip().lower()
        if Tenant.objects.filter(pk=value).exists():
            raise forms.ValidationError("A tenant with this id already exists.")
        return value


class DepartmentForm(forms.ModelForm):
    class Meta:
        model = Department
        fields = ["name", "code", "cost_center"]


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "code", "department"]

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = Department.objects.filter(tenant=tenant)


class MemberForm(forms.Form):
    email = forms.EmailField()
    name = forms.CharField(max_length=200, required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    department = forms.ModelChoiceField(queryset=Department.objects.none(), required=False)
    password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="For a new local account; leave empty when the user signs in through SSO.",
    )

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = Department.objects.filter(tenant=tenant)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
    department = forms.ModelChoiceField(queryset=Department.objects.none(), required=False)

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = Department.objects.filter(tenant=tenant)


class AllocationForm(forms.Form):
    pool = forms.ModelChoiceField(queryset=ResourcePool.objects.all())
    purpose = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field, label, unit in RESOURCES:
            self.fields[field] = forms.IntegerField(min_value=0, initial=0, label=f"{label.capitalize()} ({unit})")


class PoolForm(forms.ModelForm):
    class Meta:
        model = ResourcePool
        fields = ["name", "region", "cpu_millicores", "memory_mib", "storage_gib", "bandwidth_mbps"]
