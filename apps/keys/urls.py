from django.urls import path

from . import views

app_name = "keys"

urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:tenant_id>/", views.keyring, name="keyring"),
    path("<slug:tenant_id>/rotate/", views.rotate, name="rotate"),
]
