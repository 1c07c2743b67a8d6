from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/keys", api.DataKeyViewSet, basename="tenant-key")

urlpatterns = router.urls
