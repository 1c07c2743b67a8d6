"""The audit app: registers its encrypted column with the keys app and records sign-ins from day one."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"

    def ready(self):
        from apps.keys.fields import register_encrypted_column

        # The hash chain covers the details ciphertext, so rotation must not rewrite it; counting
        # it keeps the key versions it uses from retiring until retention purges the events.
        register_encrypted_column("audit.AuditEvent", "details", tenant_attr="tenant_id", reencrypt=False)

        from . import receivers  # noqa: F401  (connects the sign-in signal receivers)
