"""Reads: regions and deployments as a user may see them, what the router may use, and the routing version."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from apps.core.redis import get_async_redis, get_redis, key

from .models import Deployment, Region

logger = logging.getLogger(__name__)

ROUTING_VERSION_KEY = ("regions", "routing-version")


def regions_for(user):
    """Regions are platform-wide facts (names and residency groups): any signed-in user may read them."""
    if not getattr(user, "is_authenticated", False):
        return Region.objects.none()
    return Region.objects.all()


def deployments_for(user, action: str = "view"):
    """Platform admins see every deployment; tenant users only those dedicated to their tenants."""
    return Deployment.objects.restrict(user, action).select_related("region", "tenant")


def dedicated_deployments(tenant_id):
    return Deployment.objects.for_tenant(tenant_id).select_related("region")


def routable_deployments() -> list[Deployment]:
    """Every enabled deployment in an enabled region, with its region, in routing order."""
    return list(Deployment.objects.routable().order_by("model", "priority", "name"))


def routing_version() -> int:
    try:
        return int(get_redis().get(key(*ROUTING_VERSION_KEY)) or 0)
    except RedisError:
        return -1


async def arouting_version() -> int | None:
    """The counter bumped on every Region/Deployment change; None when Redis cannot say."""
    try:
        value = await get_async_redis().get(key(*ROUTING_VERSION_KEY))
    except RedisError:
        return None
    return int(value or 0)


def bump_routing_version() -> None:
    """Tell every gateway process its cached routing table is stale."""
    try:
        get_redis().incr(key(*ROUTING_VERSION_KEY))
    except RedisError:
        # Processes still reload on their own within the snapshot's maximum age.
        logger.warning("could not bump the routing version; caches expire within their max age")
