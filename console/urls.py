"""The URL map. Each app contributes up to three modules, found here by name:
`urls.py` (console pages, mounted at /<app>/), `api_urls.py` (mounted at /api/v1/) and
`root_urls.py` (mounted at /, for paths fixed by outside conventions such as /v1/chat/completions)."""

from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import views as core_views

APPS = ["core", "keys", "audit", "tenants", "accounts", "regions", "gateway", "sla", "billing", "integrations"]


def _has(module: str) -> bool:
    return find_spec(module) is not None


api_v1 = [path("", include(f"apps.{app}.api_urls")) for app in APPS if _has(f"apps.{app}.api_urls")]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("django-admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
    *[path("", include(f"apps.{app}.root_urls")) for app in APPS if _has(f"apps.{app}.root_urls")],
    path("", include("apps.core.urls")),
    *[path(f"{app}/", include(f"apps.{app}.urls")) for app in APPS if app != "core" and _has(f"apps.{app}.urls")],
]

handler400 = "apps.core.errors.handler400"
handler403 = "apps.core.errors.handler403"
handler404 = "apps.core.errors.handler404"
handler500 = "apps.core.errors.handler500"
