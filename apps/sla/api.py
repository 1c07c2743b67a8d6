"""Management API of the SLA app: policies (platform admins write), and per tenant its live
compliance, violations, alert history, reports and credits."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from apps.core.api import PlatformAdminOnly, ScopedViewSet, TenantChildViewSet, service_call
from apps.tenants.models import Tenant

from . import compliance, selectors, services
from .models import AlertEvent, SlaCredit, SlaPolicy, SlaReport, SlaViolation, validate_credit_schedule


class CreditTierSerializer(serializers.Serializer):
    below = serializers.DecimalField(max_digits=6, decimal_places=3, min_value=0, max_value=100,
                                     help_text="Availability (%) below which this credit applies.")
    credit_percent = serializers.DecimalField(max_digits=6, decimal_places=3, min_value=0, max_value=100,
                                              help_text="Credit as % of the period's bill.")


class SlaPolicySerializer(serializers.ModelSerializer):
    """Units: availability_target and error_rate_max in %, latencies and response time in ms,
    throughput in output tokens per second. A null target is not promised."""

    tenant = serializers.PrimaryKeyRelatedField(queryset=Tenant.objects.all(), allow_null=True, required=False,
                                                help_text="The tenant; null for a tier's default policy.")
    credit_schedule = CreditTierSerializer(many=True, required=False)

    class Meta:
        model = SlaPolicy
        fields = ["id", "tenant", "tier", "name", "availability_target", "error_rate_max", "latency_p50_ms",
                  "latency_p95_ms", "latency_p99_ms", "response_time_ms", "throughput_min_tps", "window",
                  "credit_schedule", "enabled", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []  # uniqueness is the service's business (one policy per tenant, one default per tier)

    def validate_credit_schedule(self, value):
        tiers = [{"below": str(t["below"]), "credit_percent": str(t["credit_percent"])} for t in value]
        try:
            validate_credit_schedule(tiers)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return tiers

    def validate(self, attrs):
        tenant = attrs.get("tenant", getattr(self.instance, "tenant", None) or self.context.get("tenant"))
        tier = attrs.get("tier", getattr(self.instance, "tier", ""))
        if tenant is None and not tier:
            raise serializers.ValidationError({"tier": "A default policy (no tenant) must name its tier."})
        if self.instance is not None and "tenant" in attrs and attrs["tenant"] != self.instance.tenant:
            raise serializers.ValidationError({"tenant": "A policy cannot move to another tenant."})
        return attrs


class SlaPolicyViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, ScopedViewSet):
    """SLA policies. Tenant users list their tenant's own policy; platform admins list all, including
    the tier defaults, and POST creates or replaces one (a tenant's, or with tenant null a tier's
    default). A single tenant's policy is read, replaced and removed at /tenants/{id}/sla/policy/."""

    serializer_class = SlaPolicySerializer
    queryset = SlaPolicy.objects.all()

    def get_queryset(self):
        return selectors.policies_for(self.request.user)

    def get_permissions(self):
        if self.action == "list":
            return [IsAuthenticated()]
        return [PlatformAdminOnly()]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        tenant, tier = data.pop("tenant", None), data.pop("tier", "")
        serializer.instance = service_call(services.save_policy, actor=self.request.user, tenant=tenant, tier=tier,
                                            request=self.request, **data)


class TenantPolicyViewSet(TenantChildViewSet):
    """The policy in force for one tenant: GET shows it (its own, else its tier's default, named in
    `source`); PUT replaces the tenant's own policy and DELETE removes it (platform admins only:
    a tenant admin must not be able to grant their own tenant credits)."""

    serializer_class = SlaPolicySerializer
    queryset = SlaPolicy.objects.all()
    action_permissions = {"list": "view_dashboards", "update": "view_dashboards", "destroy": "view_dashboards"}
    pagination_class = None

    def _platform_admin_only(self):
        if not self.request.user.is_platform_admin:
            raise PermissionDenied("Only platform admins change SLA policies.")

    def list(self, request, *args, **kwargs):
        policy = services.policy_for(self.tenant)
        data = dict(self.get_serializer(policy).data)
        data["source"] = "tenant" if policy.tenant_id == self.tenant.pk else "tier default"
        return Response(data)

    def update(self, request, *args, **kwargs):
        self._platform_admin_only()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data.pop("tenant", None)
        data.pop("tier", None)
        policy = service_call(services.save_policy, actor=request.user, tenant=self.tenant, request=request, **data)
        return Response(self.get_serializer(policy).data)

    def destroy(self, request, *args, **kwargs):
        self._platform_admin_only()
        own = SlaPolicy.objects.filter(tenant=self.tenant).first()
        if own is None:
            raise NotFound("This tenant follows its tier's default policy.")
        service_call(services.delete_policy, actor=request.user, policy=own, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ComplianceViewSet(TenantChildViewSet):
    """A tenant's live compliance, computed from rollups: metrics of the policy window and month to
    date, violations (type, expected, actual, severity), error budget, burn rates, recommendations."""

    queryset = SlaPolicy.objects.all()
    action_permissions = {"list": "view_dashboards"}
    pagination_class = None

    @extend_schema(responses={200: dict})
    def list(self, request, *args, **kwargs):
        policy = services.policy_for(self.tenant)
        result, _ = compliance.assess(policy=policy, tenant_id=self.tenant.pk, now=datetime.now(UTC))
        return Response(result)


class ViolationSerializer(serializers.ModelSerializer):
    class Meta:
        model = SlaViolation
        fields = ["id", "metric", "period", "unit", "expected", "actual", "severity", "started_at", "last_seen_at",
                  "resolved_at"]


class ViolationViewSet(mixins.ListModelMixin, TenantChildViewSet):
    serializer_class = ViolationSerializer
    queryset = SlaViolation.objects.all()
    action_permissions = {"list": "view_dashboards"}


class AlertEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertEvent
        fields = ["id", "rule", "kind", "severity", "title", "message", "values", "channels", "created_at"]


class AlertEventViewSet(mixins.ListModelMixin, TenantChildViewSet):
    serializer_class = AlertEventSerializer
    queryset = AlertEvent.objects.all()
    action_permissions = {"list": "view_dashboards"}


class ReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = SlaReport
        fields = ["id", "period_start", "period_end", "monthly", "status", "summary", "error", "created_at",
                  "finished_at"]
        read_only_fields = ["id", "monthly", "status", "summary", "error", "created_at", "finished_at"]

    def validate(self, attrs):
        if attrs["period_end"] <= attrs["period_start"]:
            raise serializers.ValidationError({"period_end": "The end must be after the start."})
        return attrs


class ReportViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, TenantChildViewSet):
    """SLA reports: POST {period_start, period_end} queues one (tenant admins); files download from the console."""

    serializer_class = ReportSerializer
    queryset = SlaReport.objects.all()
    action_permissions = {"list": "view_dashboards", "create": "manage"}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = service_call(services.request_report, actor=request.user, tenant=self.tenant, request=request,
                               start=serializer.validated_data["period_start"],
                               end=serializer.validated_data["period_end"])
        return Response(self.get_serializer(report).data, status=status.HTTP_202_ACCEPTED)


class CreditSerializer(serializers.ModelSerializer):
    class Meta:
        model = SlaCredit
        fields = ["id", "policy", "period_start", "period_end", "credit_percent", "metric", "expected", "actual",
                  "requests", "computed_at"]


class CreditViewSet(mixins.ListModelMixin, TenantChildViewSet):
    serializer_class = CreditSerializer
    queryset = SlaCredit.objects.all()
    action_permissions = {"list": "billing"}
