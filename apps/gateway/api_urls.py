from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api, endpoints

router = SimpleRouter()
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/api-keys", api.ApiKeyViewSet, basename="tenant-api-key")
router.register("model-prices", api.ModelPriceViewSet, basename="model-price")

urlpatterns = [
    path("generate", endpoints.generate, name="gateway-generate"),
    path("models", endpoints.models, name="gateway-models"),
    *router.urls,
]
