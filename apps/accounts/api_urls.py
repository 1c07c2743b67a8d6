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
    path("auth/sessions", api.MySessionsView.as_view(), name="auth-sessions"),
    path("auth/users/<int:user_id>/end-sessions", api.EndUserSessionsView.as_view(), name="auth-end-user-sessions"),
    *router.urls,
]
