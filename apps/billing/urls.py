"""Console pages of the billing app."""

from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("", views.index, name="index"),
    path("prices/", views.prices, name="prices"),
    path("prices/<int:pk>/withdraw/", views.price_withdraw, name="price-withdraw"),
    path("<slug:tenant_id>/", views.tenant, name="tenant"),
    path("<slug:tenant_id>/budgets/", views.budgets, name="budgets"),
    path("<slug:tenant_id>/budgets/<uuid:pk>/delete/", views.budget_delete, name="budget-delete"),
    path("<slug:tenant_id>/invoices/", views.invoices, name="invoices"),
    path("<slug:tenant_id>/invoices/<uuid:pk>/", views.invoice_detail, name="invoice"),
    path("<slug:tenant_id>/invoices/<uuid:pk>/<str:fmt>/", views.invoice_download, name="invoice-download"),
]
