"""The billing app: prices, cost allocation, chargeback, invoices and budgets."""

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"

    def ready(self):
        from apps.tenants.tabs import register_tab

        register_tab("Billing", "billing:tenant", "billing")
