from django.apps import AppConfig


class RegionsConfig(AppConfig):
    name = "apps.regions"
    label = "regions"
    verbose_name = "Regions and deployments"

    def ready(self):
        from apps.tenants.tabs import register_tab

        from . import signals  # noqa: F401

        register_tab("Deployments", "regions:tenant-deployments", "manage")
