"""The SLA app: policies, rollups, compliance, burn-rate alerts, dashboards, reports and credits."""

from django.apps import AppConfig


class SlaConfig(AppConfig):
    name = "apps.sla"
    label = "sla"

    def ready(self):
        from apps.tenants.tabs import register_tab

        register_tab("SLA", "sla:tenant-dashboard", "view_dashboards")
