"""python manage.py seed_demo: a platform admin and two demo tenants with people, departments and projects."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import User
from apps.core.roles import Role
from apps.tenants import services
from apps.tenants.models import Department, IsolationMode, Residency, ResourcePool, Tenant, Tier
from apps.tenants.signals import demo_seeded

DEMO_PASSWORD = "switchyard-demo-2026"
ADMIN_EMAIL = "admin@switchyard.local"

TENANTS = [
    {
        "fields": {"id": "acme-corp", "name": "Acme Corp", "tier": Tier.ENTERPRISE, "isolation_mode": IsolationMode.HYBRID,
                   "data_residency": Residency.US, "requests_per_minute": 600, "store_content": True},
        "departments": [("Engineering", "eng"), ("Marketing", "mkt")],
        "projects": [("Support bot", "support-bot", "eng"), ("Campaign writer", "campaigns", "mkt")],
        "people": [("alice@acme.test", "Alice Admin", Role.TENANT_ADMIN, "eng"), ("bob@acme.test", "Bob Builder", Role.MEMBER, "eng"),
                   ("vera@acme.test", "Vera Viewer", Role.VIEWER, "mkt"), ("aude@acme.test", "Aude Auditor", Role.AUDITOR, None)],
    },
    {
        "fields": {"id": "globex", "name": "Globex", "tier": Tier.PRO, "isolation_mode": IsolationMode.SHARED,
                   "data_residency": Residency.EU, "requests_per_minute": 300},
        "departments": [("Research", "research"), ("Operations", "ops")],
        "projects": [("Paper summaries", "summaries", "research")],
        "people": [("gina@globex.test", "Gina Admin", Role.TENANT_ADMIN, "ops"), ("greg@globex.test", "Greg Member", Role.MEMBER, "research")],
    },
]


class Command(BaseCommand):
    help = "Create (or keep) the demo data and print how to sign in. Safe to run again."

    def handle(self, *args, **opts):
        with transaction.atomic():
            admin = User.objects.filter(email=ADMIN_EMAIL).first()
            if admin is None:
                admin = User.objects.create_superuser(ADMIN_EMAIL, DEMO_PASSWORD, name="Platform Admin")
            ResourcePool.objects.get_or_create(
                name="us-east-pool",
                defaults={"region": "us-east", "cpu_millicores": 64000, "memory_mib": 262144, "storage_gib": 4096, "bandwidth_mbps": 10000},
            )
            tenants = [self._tenant(admin, spec) for spec in TENANTS]
        demo_seeded.send(sender=self.__class__, tenants=tenants, admin=admin)
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  Platform admin: {ADMIN_EMAIL} / {DEMO_PASSWORD}")
        for spec in TENANTS:
            for email, _name, role, _dept in spec["people"]:
                self.stdout.write(f"  {spec['fields']['id']:<10} {role:<13} {email} / {DEMO_PASSWORD}")
        self.stdout.write("  Admins enrol an authenticator app (TOTP) at first sign-in.")

    def _tenant(self, admin, spec) -> Tenant:
        tenant = Tenant.objects.filter(pk=spec["fields"]["id"]).first()
        if tenant is None:
            tenant = services.create_tenant(actor=admin, **spec["fields"])
        departments = {}
        for name, code in spec["departments"]:
            departments[code] = Department.objects.filter(tenant=tenant, code=code).first() or services.save_department(
                actor=admin, tenant=tenant, name=name, code=code)
        for name, code, dept in spec["projects"]:
            if not tenant.projects.filter(code=code).exists():
                services.save_project(actor=admin, tenant=tenant, name=name, code=code, department=departments[dept])
        for email, name, role, dept in spec["people"]:
            if not tenant.memberships.filter(user__email=email).exists():
                services.add_member(actor=admin, tenant=tenant, email=email, name=name, role=role,
                                    password=DEMO_PASSWORD, department=departments.get(dept))
        return tenant
