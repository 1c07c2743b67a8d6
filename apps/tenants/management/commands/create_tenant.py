"""python manage.py create_tenant --id acme-corp --name "Acme Corp" [--tier ...] [--admin-email ...]"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.core.roles import Role
from apps.tenants import services
from apps.tenants.models import IsolationMode, RedisOutageMode, Residency, TenantStatus, Tier


class Command(BaseCommand):
    help = "Create a tenant non-interactively, optionally with its first tenant admin."

    def add_arguments(self, parser):
        parser.add_argument("--id", required=True, help="Permanent slug id, e.g. acme-corp")
        parser.add_argument("--name", required=True)
        parser.add_argument("--tier", choices=Tier.values, default=Tier.PRO)
        parser.add_argument("--status", choices=TenantStatus.values, default=TenantStatus.ACTIVE)
        parser.add_argument("--isolation", choices=IsolationMode.values, default=IsolationMode.SHARED)
        parser.add_argument("--residency", choices=Residency.values, default=Residency.ANY)
        parser.add_argument("--rpm", type=int, help="Requests per minute")
        parser.add_argument("--rpd", type=int, help="Requests per day")
        parser.add_argument("--tokens-per-month", type=int)
        parser.add_argument("--max-concurrent", type=int)
        parser.add_argument("--allowed-models", default="", help="Comma-separated model ids (empty: all)")
        parser.add_argument("--retention-days", type=int)
        parser.add_argument("--store-content", action="store_true")
        parser.add_argument("--no-encrypt-content", action="store_true")
        parser.add_argument("--redis-outage-mode", choices=RedisOutageMode.values)
        parser.add_argument("--admin-email", help="Add this user (created if new) as tenant admin")
        parser.add_argument("--admin-password", help="Password for a newly created admin")

    def handle(self, *args, **opts):
        fields = {
            "id": opts["id"], "name": opts["name"], "tier": opts["tier"], "status": opts["status"],
            "isolation_mode": opts["isolation"], "data_residency": opts["residency"],
            "allowed_models": [m.strip() for m in opts["allowed_models"].split(",") if m.strip()],
            "store_content": opts["store_content"], "encrypt_content": not opts["no_encrypt_content"],
        }
        optional = {
            "requests_per_minute": opts["rpm"], "requests_per_day": opts["rpd"],
            "tokens_per_month": opts["tokens_per_month"], "max_concurrent": opts["max_concurrent"],
            "retention_days": opts["retention_days"], "redis_outage_mode": opts["redis_outage_mode"],
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        try:
            with transaction.atomic():
                tenant = services.create_tenant(actor=None, **fields)
                if opts["admin_email"]:
                    services.add_member(actor=None, tenant=tenant, email=opts["admin_email"], role=Role.TENANT_ADMIN,
                                        password=opts["admin_password"])
        except ValidationError as exc:
            details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()) \
                if hasattr(exc, "error_dict") else " ".join(exc.messages)
            raise CommandError(f"Tenant not created: {details}") from None
        self.stdout.write(self.style.SUCCESS(f"Created tenant {tenant.pk} ({tenant.name})"))
