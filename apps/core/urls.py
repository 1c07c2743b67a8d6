from django.urls import path

from . import notification_views, views

app_name = "core"

urlpatterns = [
    path("", views.home, name="home"),
    path("settings/", views.settings_hub, name="settings"),
    *[
        path(f"section/{name}/", views.section, {"name": name}, name=f"section-{name}")
        for name in views.SECTIONS
    ],
    path("notifications/", notification_views.channel_index, name="notifications-index"),
    path("notifications/<slug:tenant_id>/", notification_views.channel_list, name="notifications"),
    path("notifications/<slug:tenant_id>/<uuid:pk>/", notification_views.channel_edit, name="notification-edit"),
    path("notifications/<slug:tenant_id>/<uuid:pk>/delete/", notification_views.channel_delete,
         name="notification-delete"),
    path("notifications/<slug:tenant_id>/<uuid:pk>/test/", notification_views.channel_test, name="notification-test"),
]
