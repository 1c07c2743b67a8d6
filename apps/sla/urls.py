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
    path("<slug:tenant_id>/reports/<uuid:pk>/<str:fmt>/", views.report_download, name="report-download"),
]
