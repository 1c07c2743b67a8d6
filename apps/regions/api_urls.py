from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("regions", api.RegionViewSet, basename="region")
router.register("deployments", api.DeploymentViewSet, basename="deployment")

urlpatterns = router.urls
