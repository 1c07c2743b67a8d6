"""Gateway reads, scoped to what the user may see."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from .models import ApiKey, ModelPrice, UsageRecord


def api_keys_of(user, tenant):
    return ApiKey.objects.restrict(user, "manage").filter(tenant=tenant).select_related("user", "department", "project")


def usage_of(user, tenant_ids: list[str] | None = None, *, since: datetime | None = None):
    queryset = UsageRecord.objects.restrict(user, "view_usage")
    if tenant_ids is not None:
        queryset = queryset.filter(tenant_id__in=tenant_ids)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    return queryset


def usage_summary(user, tenant_ids: list[str] | None = None, *, minutes: int = 60) -> list[dict]:
    """Per tenant and model over the last `minutes`: requests, errors, tokens, cost."""
    since = timezone.now() - timedelta(minutes=minutes)
    return list(
        usage_of(user, tenant_ids, since=since)
        .values("tenant_id", "model")
        .annotate(
            requests=Count("request_id"),
            errors=Count("request_id", filter=~Q(status="success")),
            tokens_in=Sum("prompt_tokens"),
            tokens_out=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("tenant_id", "model")
    )


def recent_usage(user, tenant, *, limit: int = 50):
    return usage_of(user, [tenant.pk]).order_by("-created_at")[:limit]


def current_prices():
    return ModelPrice.objects.order_by("model", "-effective_from")
