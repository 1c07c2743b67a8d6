"""Any change to a region or deployment, from any path (service, admin, shell), invalidates routing caches."""

from __future__ import annotations

import django.dispatch
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Deployment, Region
from .selectors import bump_routing_version

# Sent after the change commits; the gateway's router listens to drop this process's cache at once
# (other processes see the bumped Redis version).
routing_changed = django.dispatch.Signal()


def _changed() -> None:
    bump_routing_version()
    routing_changed.send(sender=Deployment)


@receiver(post_save, sender=Region)
@receiver(post_delete, sender=Region)
@receiver(post_save, sender=Deployment)
@receiver(post_delete, sender=Deployment)
def routing_table_changed(sender, **kwargs):
    transaction.on_commit(_changed)
