from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "apps.gateway"
    label = "gateway"
    verbose_name = "Gateway"

    def ready(self):
        from apps.regions import healthchecks

        from . import signals  # noqa: F401
        from .providers.registry import get_provider, provider_kinds

        # The regions app's periodic health checks probe each deployment as its adapter does.
        for kind, _label in provider_kinds():
            healthchecks.register_probe_request(kind, get_provider(kind).probe_request)
