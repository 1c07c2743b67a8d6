"""Audit API: search events, read one (details decrypted for auditors), export, compliance report, public key."""

from __future__ import annotations

from functools import partial

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ScopedViewSet
from apps.core.roles import user_can

from . import signing
from .exports import compliance_download, export_response
from .forms import CompliancePeriodForm, EventFilterForm
from .models import AuditEvent
from .selectors import PLATFORM, compliance_report, details_of, search_events, search_page


class AuditEventSerializer(serializers.ModelSerializer):
    tenant = serializers.SerializerMethodField()
    actor = serializers.SerializerMethodField()
    details = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id", "tenant", "seq", "occurred_at", "actor", "action", "resource_type", "resource_id", "result",
            "ip", "user_agent", "request_id", "metadata", "details", "prev_hash", "hash",
        ]

    def get_tenant(self, event) -> str:
        return event.tenant_id or PLATFORM

    def get_actor(self, event) -> dict:
        return {"type": event.actor_type, "id": event.actor_id, "label": event.actor_label, "user_id": event.user_id}

    def get_details(self, event) -> dict | None:
        if not self.context.get("with_details"):
            return {"encrypted": True} if event.details else None
        return details_of(self.context["request"].user, event)


class NoCountPagination(BasePagination):
    """Page numbers without a total: counting a filter over millions of events is the slow part."""

    page_size = 50
    max_page_size = 500

    def paginate(self, request, fetch):
        """`fetch(page=, size=)` returns (rows, has_next)."""
        try:
            self.page = max(1, int(request.query_params.get("page", 1)))
            self.size = min(self.max_page_size, max(1, int(request.query_params.get("page_size", self.page_size))))
        except ValueError:
            raise ValidationError({"page": ["Must be a positive integer."]}) from None
        rows, self.has_next = fetch(page=self.page, size=self.size)
        self.request = request
        return rows

    def get_paginated_response(self, data):
        url = self.request.build_absolute_uri()
        from rest_framework.utils.urls import replace_query_param

        return Response({
            "next": replace_query_param(url, "page", self.page + 1) if self.has_next else None,
            "previous": replace_query_param(url, "page", self.page - 1) if self.page > 1 else None,
            "page": self.page,
            "results": data,
        })


def _check_tenant_param(user, tenant: str | None) -> None:
    """Another tenant is a 404; a tenant the user belongs to without the audit role is a 403."""
    if not tenant or getattr(user, "is_platform_admin", False):
        return
    if tenant == PLATFORM or tenant not in user.tenant_roles():
        raise Http404
    if not user_can(user, tenant, "audit"):
        raise PermissionDenied("Your role does not allow audit on this tenant.")


def _filters(request):
    _check_tenant_param(request.user, request.query_params.get("tenant"))
    form = EventFilterForm(request.query_params, user=request.user)
    if not form.is_valid():
        raise ValidationError({name: [str(e) for e in errors] for name, errors in form.errors.items()})
    return form.filters()


FILTER_PARAMETERS = [
    OpenApiParameter(name, str, description=text)
    for name, text in [
        ("tenant", "Tenant id ('platform' for platform events; platform admins only)."),
        ("user", "User email or id (events by that user or their API keys)."),
        ("action", "Exact action, or a prefix ending in * (auth.*)."),
        ("resource", "Resource type, or type:id."),
        ("result", "success, failure or denied."),
        ("since", "From this date or ISO date-time (inclusive, UTC when naive)."),
        ("until", "Until this date or ISO date-time (exclusive)."),
        ("q", "Full-text search over the clear fields and metadata."),
    ]
]


class AuditEventViewSet(ScopedViewSet):
    """Audit events of the tenants you may audit, newest first."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    pagination_class = NoCountPagination
    action_permissions = {"list": "audit", "retrieve": "audit", "export": "audit"}
    lookup_value_regex = "[0-9a-f-]{36}"

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["with_details"] = self.action == "retrieve"
        return context

    @extend_schema(parameters=[*FILTER_PARAMETERS, OpenApiParameter("page", int), OpenApiParameter("page_size", int)])
    def list(self, request):
        filters = _filters(request)
        page = self.paginator.paginate(request, partial(search_page, request.user, filters))
        return self.paginator.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        event = get_object_or_404(self.scoped_queryset().defer("search"), pk=pk)
        if event.tenant_id is None and not request.user.is_platform_admin:
            raise Http404
        self.check_object_permissions(request, event)
        return Response(self.get_serializer(event).data)

    @extend_schema(
        parameters=[*FILTER_PARAMETERS, OpenApiParameter("as", str, enum=["csv", "json"]),
                    OpenApiParameter("details", bool, description="JSON only: include decrypted details.")],
        responses={(200, "text/csv"): str, (200, "application/json"): str},
    )
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The whole filtered result (up to SWITCHYARD_AUDIT_EXPORT_MAX_ROWS) as a CSV or JSON download; audited."""
        fmt = request.query_params.get("as", "csv")
        if fmt not in ("csv", "json"):
            raise ValidationError({"as": ["Choose csv or json."]})
        filters = _filters(request)
        return export_response(
            user=request.user, request=request, events=search_events(request.user, filters), filters=filters,
            fmt=fmt, with_details=request.query_params.get("details") in ("1", "true", "yes"),
        )


class ComplianceReportView(APIView):
    """A tenant's compliance report for a period (default: the last 30 days): `as=csv|json` downloads it."""

    @extend_schema(parameters=[
        OpenApiParameter("tenant", str, required=True), OpenApiParameter("since", str), OpenApiParameter("until", str),
        OpenApiParameter("as", str, enum=["csv", "json"], description="Download instead of the JSON body."),
    ], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        tenant = request.query_params.get("tenant")
        if not tenant:
            raise ValidationError({"tenant": ["This field is required."]})
        if tenant == PLATFORM and not request.user.is_platform_admin:
            raise Http404
        if tenant != PLATFORM:
            _check_tenant_param(request.user, tenant)
            from django.apps import apps

            if not apps.get_model("tenants", "Tenant").objects.filter(pk=tenant).exists():
                raise Http404
        form = CompliancePeriodForm(request.query_params)
        if not form.is_valid():
            raise ValidationError({name: [str(e) for e in errors] for name, errors in form.errors.items()})
        report = compliance_report(
            tenant_id=None if tenant == PLATFORM else tenant, since=form.cleaned_data["since"], until=form.cleaned_data["until"]
        )
        fmt = request.query_params.get("as")
        if fmt:
            if fmt not in ("csv", "json"):
                raise ValidationError({"as": ["Choose csv or json."]})
            return compliance_download(user=request.user, request=request, report=report, fmt=fmt)
        return Response(report)


class SigningKeyView(APIView):
    """The Ed25519 public key that verifies audit checkpoints."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({
            "algorithm": "Ed25519", "key_id": signing.current_key_id(), "public_key": signing.public_key_b64(),
            "pem": signing.public_key_pem(),
        })
