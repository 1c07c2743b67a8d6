from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("integrations/exports", api.ExportViewSet, basename="gateway-export")

urlpatterns = router.urls
