"""`manage.py create_tenant` with non-interactive flags."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.core.roles import Role
from apps.tenants.models import Membership, Tenant


@pytest.mark.django_db
def test_create_tenant_command_creates_tenant_and_admin():
    call_command("create_tenant", "--id", "acme-corp", "--name", "Acme Corp", "--tier", "enterprise",
                 "--isolation", "strict", "--residency", "eu", "--rpm", "120", "--allowed-models", "a,b",
                 "--admin-email", "boss@acme.test", "--admin-password", "a-long-enough-passphrase")
    tenant = Tenant.objects.get(pk="acme-corp")
    assert (tenant.tier, tenant.isolation_mode, tenant.data_residency, tenant.requests_per_minute) == ("enterprise", "strict", "eu", 120)
    assert tenant.allowed_models == ["a", "b"]
    assert Membership.objects.get(tenant=tenant, user__email="boss@acme.test").role == Role.TENANT_ADMIN


@pytest.mark.django_db
def test_create_tenant_command_reports_field_errors_and_creates_nothing():
    with pytest.raises(CommandError, match="retention_days"):
        call_command("create_tenant", "--id", "bad", "--name", "Bad", "--retention-days", "9999")
    with pytest.raises(CommandError, match="password"):
        call_command("create_tenant", "--id", "weakpw", "--name", "Weak", "--admin-email", "x@y.test", "--admin-password", "123")
    assert not Tenant.objects.filter(pk__in=["bad", "weakpw"]).exists()
