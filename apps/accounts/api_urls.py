from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("identity-providers", api.IdentityProviderViewSet, basename="identity-provider")
router.register("service-clients", api.ServiceClientViewSet, basename="service-client")

urlpatterns = [
    path("auth/token", api.TokenView.as_view(), name="auth-token"),
    path("auth/revoke", api.RevokeView.as_view(), name="auth-revoke"),
    path("auth/whoami", api.WhoAmIView.as_view(), name="auth-whoami"),
    *router.urls,
]
