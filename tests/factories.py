"""One object of every tenant-owned kind for a tenant, so the scoping matrix can reach each route.

A new tenant-scoped route whose object kind is missing here makes the matrix test fail and say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal


def populate_tenant(tenant, admin) -> None:
    from apps.accounts import services as accounts_services
    from apps.accounts.tokens import create_service_client
    from apps.billing.money import month_start
    from apps.billing.services import issue_invoices, save_budget
    from apps.core.models import NotificationChannel
    from apps.gateway.services import create_api_key
    from apps.keys.services import ensure_tenant_keyring
    from apps.regions.models import Region
    from apps.regions.services import create_deployment
    from apps.tenants import services
    from apps.tenants.models import ResourcePool
    from tests.billing.conftest import add_usage, price

    # tenants: a department, a project and an allocation.
    ensure_tenant_keyring(tenant_id=tenant.pk)
    dept = services.save_department(actor=admin, tenant=tenant, name="Engineering", code="eng")
    project = services.save_project(actor=admin, tenant=tenant, name="Bot", code="bot", department=dept)
    pool = ResourcePool.objects.create(name=f"pool-{tenant.pk}", cpu_millicores=1000, memory_mib=1000, storage_gib=10,
                                       bandwidth_mbps=10)
    services.allocate_resources(actor=admin, tenant=tenant, pool=pool, cpu_millicores=10)
    # core: a notification channel.
    NotificationChannel.objects.create(tenant=tenant, kind="webhook", name="ops hook", target="http://127.0.0.1:9/hook")
    # gateway and regions: an API key and a dedicated deployment.
    create_api_key(actor=admin, tenant=tenant, name="matrix key", user=admin, department=dept, project=project)
    region = Region.objects.filter(pk="matrix-us").first() or Region.objects.create(id="matrix-us", name="Matrix US", group="us")
    create_deployment(actor=None, name=f"dedicated-{tenant.pk}", model="sim-small", provider="simulator",
                      upstream_model="sim-small", base_url="http://127.0.0.1:9", region=region, tenant=tenant,
                      api_key="sk-matrix")
    # accounts: an identity provider and a service client.
    accounts_services.create_identity_provider(
        tenant=tenant, actor=admin, kind="ldap", name="Directory", ldap_server_uri="ldap://127.0.0.1:9",
        ldap_user_search_base="dc=example", ldap_bind_password="bind-secret")
    create_service_client(tenant_id=tenant.pk, name="matrix client", role="member", created_by=admin)
    # billing: a budget and an invoice for last month's usage.
    save_budget(actor=admin, tenant=tenant, scope="tenant", amount=Decimal("100.00"))
    last_month = month_start(datetime.now(UTC) - timedelta(days=32))
    price("sim-small", "0.01", "0.02", last_month - timedelta(days=30))
    add_usage(tenant.pk, created_at=last_month + timedelta(days=1))
    issue_invoices(tenant_id=tenant.pk, period_start=last_month, actor=admin)
