"""Billing API: model prices (with history and the unpriced list), cost allocation and chargeback
(JSON or CSV), budgets, and invoices with their PDF/CSV and credit notes."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import PlatformAdminOnly, TenantChildViewSet, service_call
from apps.core.mixins import get_tenant_or_404
from apps.gateway.models import ModelPrice
from apps.tenants.models import Department, Project

from . import exports, selectors, services
from .models import Budget, Invoice
from .money import period_label, resolve_range


def _range(request):
    params = request.query_params
    try:
        return resolve_range(period=params.get("period"), start=params.get("start"), end=params.get("end"),
                             now=datetime.now(UTC))
    except ValueError as exc:
        field, message = exc.args if len(exc.args) == 2 else ("period", str(exc))
        raise serializers.ValidationError({field: [message]}) from None


def _csv(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- prices -------------------------------------------------------------------------------------

class PriceSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelPrice
        fields = ["id", "model", "input_per_1k", "output_per_1k", "currency", "effective_from", "created_at"]
        read_only_fields = ["id", "created_at"]
        # Uniqueness is checked by the service with a field message.
        validators = []

    def validate_input_per_1k(self, value):
        if value < 0:
            raise serializers.ValidationError("A price of zero or more.")
        return value

    validate_output_per_1k = validate_input_per_1k


class PriceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                   mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Model prices, history included (per 1k input and output tokens). Signed-in users read;
    platform admins add a price from now or a future date (never retroactive) and may withdraw a
    price that has not started yet. `?model=` filters."""

    queryset = ModelPrice.objects.all()
    serializer_class = PriceSerializer

    def get_permissions(self):
        if self.action in ("list", "retrieve", "unpriced"):
            return [permissions.IsAuthenticated()]
        return [permissions.IsAuthenticated(), PlatformAdminOnly()]

    def get_queryset(self):
        queryset = selectors.prices()
        model = self.request.query_params.get("model")
        return queryset.filter(model=model) if model else queryset

    def perform_create(self, serializer):
        serializer.instance = service_call(services.set_price, actor=self.request.user, request=self.request,
                                            **serializer.validated_data)

    def perform_destroy(self, instance):
        service_call(services.delete_future_price, actor=self.request.user, price=instance, request=self.request)

    @action(detail=False, methods=["get"])
    def unpriced(self, request):
        """Models requested without a price in the last 90 days, for an admin to price."""
        if not request.user.is_platform_admin:
            raise PermissionDenied("Only platform admins see usage across tenants.")
        rows = selectors.unpriced_models(now=datetime.now(UTC))
        return Response([{**row, "first_seen": row["first_seen"].isoformat(),
                          "last_seen": row["last_seen"].isoformat()} for row in rows])


# --- allocation and chargeback ------------------------------------------------------------------

class AllocationView(APIView):
    """GET: a tenant's cost by department, project, user, model and API key for `?period=YYYY-MM`
    (default this month) or `?start=&end=` dates; `?format=csv` for the CSV export. Tenant admins."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, tenant_pk):
        tenant = get_tenant_or_404(request.user, tenant_pk, "billing")
        start, end = _range(request)
        alloc = selectors.allocation(tenant_id=tenant.pk, start=start, end=end,
                                     currency=request.query_params.get("currency") or None)
        if request.query_params.get("format") == "csv":
            return _csv(exports.allocation_csv(alloc), f"allocation-{tenant.pk}-{start:%Y%m%d}-{end:%Y%m%d}.csv")
        return Response(alloc.as_dict())

    def get_renderers(self):
        # ?format=csv is answered above with a plain HttpResponse; keep DRF from refusing it.
        from rest_framework.renderers import JSONRenderer

        return [JSONRenderer()]

    def perform_content_negotiation(self, request, force=False):
        renderers = self.get_renderers()
        return renderers[0], renderers[0].media_type


class ChargebackView(AllocationView):
    """GET: the chargeback report: total, by department and project, top 10 users, the period's
    SLA credits and the net due (same rounding as the invoice)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, tenant_pk):
        tenant = get_tenant_or_404(request.user, tenant_pk, "billing")
        start, end = _range(request)
        report = selectors.chargeback(tenant_id=tenant.pk, start=start, end=end)
        return Response(selectors.chargeback_as_dict(report))


# --- budgets ------------------------------------------------------------------------------------

class BudgetSerializer(serializers.ModelSerializer):
    department = serializers.PrimaryKeyRelatedField(queryset=Department.objects.all(), allow_null=True, required=False)
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all(), allow_null=True, required=False)
    spent = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = ["id", "scope", "department", "project", "amount", "currency", "period", "hard_limit", "enabled",
                  "spent", "created_at", "updated_at"]
        read_only_fields = ["id", "spent", "created_at", "updated_at"]
        validators = []

    def get_spent(self, budget) -> str:
        return str(services.budget_spend(budget=budget))


class BudgetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantChildViewSet):
    """A tenant's budgets (tenant, department or project; per day or month), with what each has
    spent this period. Tenant admins read and write. With hard_limit the gateway refuses requests
    that would exceed it (429)."""

    queryset = Budget.objects.all()
    serializer_class = BudgetSerializer
    action_permissions = {"list": "billing", "retrieve": "billing"}

    def get_queryset(self):
        return super().get_queryset().select_related("department", "project")

    def _save(self, serializer, budget=None):
        data = dict(serializer.validated_data)
        if budget is not None:
            for name in ("scope", "department", "project", "amount", "currency", "period", "hard_limit", "enabled"):
                data.setdefault(name, getattr(budget, name))
        serializer.instance = service_call(services.save_budget, actor=self.request.user, tenant=self.tenant,
                                            budget=budget, request=self.request, **data)

    def perform_create(self, serializer):
        self._save(serializer)

    def perform_update(self, serializer):
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance):
        services.delete_budget(actor=self.request.user, budget=instance, request=self.request)


# --- invoices -----------------------------------------------------------------------------------

class InvoiceLineSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    model = serializers.CharField()
    department_id = serializers.IntegerField(allow_null=True)
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=24, decimal_places=8)
    amount = serializers.DecimalField(max_digits=16, decimal_places=2)


class InvoiceSerializer(serializers.ModelSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)
    corrects = serializers.SlugRelatedField(slug_field="number", read_only=True)
    period = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = ["id", "number", "kind", "corrects", "period", "period_start", "period_end", "currency", "subtotal",
                  "credits", "total", "usage_cost", "requests", "unpriced_requests", "reason", "issued_at",
                  "issued_by", "lines"]
        read_only_fields = fields

    def get_period(self, invoice) -> str:
        return period_label(invoice.period_start)


class IssueSerializer(serializers.Serializer):
    period = serializers.RegexField(r"^\d{4}-\d{2}$", help_text="The month to close, YYYY-MM.")


class CreditNoteSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=16, decimal_places=2, min_value=0)
    reason = serializers.CharField(max_length=300)


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantChildViewSet):
    """A tenant's invoices and credit notes (never edited). Tenant admins read and download;
    platform admins close a period on demand (`POST .../issue/ {"period": "2026-10"}`, idempotent)
    and correct an invoice with a credit note (`POST .../{id}/credit-note/`)."""

    queryset = Invoice.objects.all()
    serializer_class = InvoiceSerializer
    action_permissions = {"list": "billing", "retrieve": "billing", "pdf": "billing", "csv": "billing"}

    def get_queryset(self):
        return super().get_queryset().select_related("corrects").prefetch_related("lines")

    def _platform_only(self):
        if not self.request.user.is_platform_admin:
            raise PermissionDenied("Only platform admins issue invoices and credit notes.")

    @action(detail=False, methods=["post"], serializer_class=IssueSerializer)
    def issue(self, request, *args, **kwargs):
        self._platform_only()
        body = IssueSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            from .money import parse_period

            start = parse_period(body.validated_data["period"])
        except ValueError as exc:
            raise serializers.ValidationError({"period": [str(exc)]}) from None
        invoices = service_call(services.issue_invoices, tenant_id=self.tenant.pk, period_start=start,
                                 actor=request.user, request=request)
        return Response(InvoiceSerializer(invoices, many=True).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], url_path="credit-note", serializer_class=CreditNoteSerializer)
    def credit_note(self, request, *args, **kwargs):
        invoice = self.get_object()
        self._platform_only()
        body = CreditNoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        note = service_call(services.issue_credit_note, actor=request.user, invoice=invoice, request=request,
                             **body.validated_data)
        return Response(InvoiceSerializer(note).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"])
    def pdf(self, request, *args, **kwargs):
        invoice = self.get_object()
        response = HttpResponse(exports.invoice_pdf(invoice, self.tenant.name), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response

    @action(detail=True, methods=["get"])
    def csv(self, request, *args, **kwargs):
        invoice = self.get_object()
        return _csv(exports.invoice_csv(invoice), f"{invoice.number}.csv")
