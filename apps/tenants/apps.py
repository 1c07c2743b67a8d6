from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"

    def ready(self):
        from .tabs import register_tab

        # The keys app sits below tenants and cannot register its own tab.
        register_tab("Keys", "keys:keyring", "audit")
