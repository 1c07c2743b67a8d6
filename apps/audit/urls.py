"""Console routes of the audit section, mounted at /audit/."""

from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("", views.search, name="search"),
    path("events/<uuid:event_id>/", views.event_detail, name="event"),
    path("export.csv", views.export, {"fmt": "csv"}, name="export-csv"),
    path("export.json", views.export, {"fmt": "json"}, name="export-json"),
    path("compliance/", views.compliance, name="compliance"),
]
