from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("tenants", api.TenantViewSet, basename="tenant")
router.register("resource-pools", api.ResourcePoolViewSet, basename="resource-pool")
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/departments", api.DepartmentViewSet, basename="tenant-department")
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/projects", api.ProjectViewSet, basename="tenant-project")
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/memberships", api.MembershipViewSet, basename="tenant-membership")
router.register(r"tenants/(?P<tenant_pk>[a-z0-9-]+)/allocations", api.AllocationViewSet, basename="tenant-allocation")

urlpatterns = router.urls
