"""Billing API routes, mounted at /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("billing/prices", api.PriceViewSet, basename="billing-price")
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/budgets", api.BudgetViewSet, basename="tenant-budget")
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/invoices", api.InvoiceViewSet, basename="tenant-invoice")

urlpatterns = [
    path("tenants/<slug:tenant_pk>/billing/allocation", api.AllocationView.as_view(), name="billing-allocation"),
    path("tenants/<slug:tenant_pk>/billing/chargeback", api.ChargebackView.as_view(), name="billing-chargeback"),
    *router.urls,
]
