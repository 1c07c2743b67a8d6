"""Console page: a tenant's quota violations (refusals per minute and limit) and live quota use."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, Sum
from django.utils import timezone
from django.views.generic import TemplateView

from apps.core.mixins import TenantPageMixin, is_htmx
from apps.core.models import QuotaViolation

from . import quotas, violations

DIMENSION_LABELS = {
    "requests_per_minute": "Requests per minute",
    "requests_per_day": "Requests per day",
    "tokens_per_month": "Tokens per month",
    "max_concurrent": "Concurrent requests",
}


def _quota_rows(tenant) -> tuple[list[dict], str]:
    """Each limit of the tenant with its use right now; an error note when Redis is down."""
    try:
        used = quotas.usage_sync(tenant_id=tenant.pk)
    except Exception:  # the page still shows the recorded violations without Redis
        return [], "Live quota use is unavailable: Redis cannot be reached."
    rows = []
    for field, label in DIMENSION_LABELS.items():
        limit = getattr(tenant, field, None)
        current = used[field]
        percent = min(100, round(100 * current / limit)) if limit else (100 if limit == 0 else 0)
        rows.append({"label": label, "limit": limit, "used": current, "percent": percent})
    return rows, ""


class ViolationListView(TenantPageMixin, TemplateView):
    tenant_action = "view_usage"
    template_name = "gateway/violations.html"
    partial_template = "gateway/_violations_body.html"
    days = 7

    def get_template_names(self):
        return [self.partial_template if is_htmx(self.request) else self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        since = timezone.now() - timedelta(days=self.days)
        recorded = QuotaViolation.objects.restrict(self.request.user, "view_usage").filter(
            tenant=self.tenant, minute__gte=since
        )
        day_ago = timezone.now() - timedelta(hours=24)
        context.update(
            days=self.days,
            summary=list(
                recorded.filter(minute__gte=day_ago).values("reason", "scope")
                .annotate(refused=Sum("count"), minutes=Count("id"), last=Max("minute")).order_by("-refused")
            ),
            recent=list(recorded.order_by("-minute", "reason")[:200]),
            pending=violations.current_counts(tenant_id=self.tenant.pk) if self._redis_ok() else [],
            labels=DIMENSION_LABELS,
        )
        context["quota_rows"], context["quota_error"] = _quota_rows(self.tenant)
        return context

    @staticmethod
    def _redis_ok() -> bool:
        from apps.core.redis import get_redis

        try:
            get_redis().ping()
            return True
        except Exception:
            return False
