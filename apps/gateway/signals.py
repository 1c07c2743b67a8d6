"""Keep the hot path's cached snapshots honest: any change to a tenant, its departments,
projects or members, or to an API key, drops the cached copy in every process (Redis)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.tenants.models import Department, Membership, Project, Tenant
from apps.tenants.signals import demo_seeded

from . import context, pricing
from .models import ApiKey, ModelPrice

logger = logging.getLogger(__name__)


def _forget_tenant_later(tenant_id: str) -> None:
    def forget():
        try:
            context.forget_tenant(tenant_id)
        except Exception:  # Redis down: the entry expires within TENANT_CACHE_SECONDS anyway
            logger.warning("could not drop the cached tenant snapshot", extra={"tenant_id": tenant_id})

    forget()
    transaction.on_commit(forget)


@receiver([post_save, post_delete], sender=Tenant)
def _tenant_changed(sender, instance, **kwargs):
    _forget_tenant_later(instance.pk)


@receiver([post_save, post_delete], sender=Department)
@receiver([post_save, post_delete], sender=Project)
@receiver([post_save, post_delete], sender=Membership)
def _tenant_part_changed(sender, instance, **kwargs):
    _forget_tenant_later(instance.tenant_id)


@receiver([post_save, post_delete], sender=ApiKey)
def _key_changed(sender, instance, **kwargs):
    gone = kwargs.get("signal") is post_delete or instance.revoked_at is not None
    hashed = instance.hashed_key

    def forget():
        try:
            context.forget_key(hashed, revoked=gone)
        except Exception:
            logger.warning("could not drop the cached key snapshot", extra={"prefix": instance.prefix})

    transaction.on_commit(forget)


@receiver([post_save, post_delete], sender=ModelPrice)
def _price_changed(sender, instance, **kwargs):
    transaction.on_commit(pricing.price_book_changed)


@receiver(demo_seeded)
def _seed_demo(sender, tenants, admin=None, **kwargs):
    from .services import seed_demo_gateway

    seed_demo_gateway(tenants=tenants, actor=admin)
