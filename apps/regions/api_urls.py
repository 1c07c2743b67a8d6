from rest_framework.routers import SimpleRouter

from . import api, failover_api

router = SimpleRouter()
router.register("regions", api.RegionViewSet, basename="region")
router.register("deployments", api.DeploymentViewSet, basename="deployment")
router.register("failover/policies", failover_api.FailoverPolicyViewSet, basename="failover-policy")
router.register("failover/events", failover_api.FailoverEventViewSet, basename="failover-event")

urlpatterns = router.urls
