from django.urls import path

from . import views

app_name = "core"

urlpatterns = [
    path("", views.home, name="home"),
    *[
        path(f"{name}/", views.section, {"name": name}, name=f"section-{name}")
        for name in views.SECTIONS
    ],
]
