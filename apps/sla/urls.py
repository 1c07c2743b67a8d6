"""Console pages of the SLA app."""

from django.urls import path

from . import views

app_name = "sla"

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("<slug:tenant_id>/", views.tenant_dashboard, name="tenant-dashboard"),
    path("<slug:tenant_id>/policy/", views.policy, name="policy"),
    path("<slug:tenant_id>/alerts/", views.alert_history, name="alerts"),
    path("<slug:tenant_id>/reports/", views.reports, name="reports"),
    # The report and format are query parameters (?report=<id>&format=pdf|csv), so the route is
    # scoped by the tenant in the path alone.
    path("<slug:tenant_id>/reports/download/", views.report_download, name="report-download"),
]
