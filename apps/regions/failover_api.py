"""Management API for high availability (platform admins): failover policies, failover events, region health."""

from __future__ import annotations

from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import PlatformAdminOnly, service_call

from . import failover
from .models import FailoverEvent, FailoverPolicy, Region


class FailoverPolicySerializer(serializers.ModelSerializer):
    """`active_region` and `primary_healthy_since` are the live state the health checks maintain."""

    model = serializers.CharField(max_length=100)
    primary_region = serializers.PrimaryKeyRelatedField(queryset=Region.objects.all())
    failed_over = serializers.BooleanField(read_only=True)

    class Meta:
        model = FailoverPolicy
        fields = ["model", "primary_region", "active_region", "failback_after_seconds", "enabled", "failed_over",
                  "primary_healthy_since", "changed_at", "created_at", "updated_at"]
        read_only_fields = ["active_region", "primary_healthy_since", "changed_at", "created_at", "updated_at"]

    def validate_model(self, value):
        if self.instance is not None and value != self.instance.model:
            raise serializers.ValidationError("A policy's model cannot change; delete it and create another.")
        return value


class FailoverPolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                           mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """A model's primary region and failback delay. `GET .../health/` gives every region's health for it."""

    serializer_class = FailoverPolicySerializer
    queryset = FailoverPolicy.objects.all()
    permission_classes = [PlatformAdminOnly]
    lookup_value_regex = "[^/]+"

    def perform_create(self, serializer):
        serializer.instance = service_call(failover.set_policy, actor=self.request.user, request=self.request,
                                            **serializer.validated_data)

    def perform_update(self, serializer):
        data = {"primary_region": serializer.instance.primary_region,
                "failback_after_seconds": serializer.instance.failback_after_seconds,
                "enabled": serializer.instance.enabled, **serializer.validated_data}
        data["model"] = serializer.instance.model
        serializer.instance = service_call(failover.set_policy, actor=self.request.user, request=self.request, **data)

    def perform_destroy(self, instance):
        failover.delete_policy(actor=self.request.user, policy=instance, request=self.request)

    @action(detail=True, methods=["get"])
    def health(self, request, pk=None):
        policy = self.get_object()
        regions = failover.region_health(policy.model)
        return Response({
            "model": policy.model,
            "order": failover.region_order(policy, regions),
            "regions": [{"region": r.region_id, "healthy": r.healthy, "latency_ms": r.latency_ms,
                         "deployments": r.deployments, "healthy_deployments": r.healthy_deployments}
                        for r in regions.values()],
        })


class FailoverEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = FailoverEvent
        fields = ["id", "created_at", "model", "kind", "from_region", "to_region", "reason", "hook_results"]
        read_only_fields = fields


class FailoverEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Every failover and failback, newest first; `?model=` narrows to one model."""

    serializer_class = FailoverEventSerializer
    queryset = FailoverEvent.objects.all()
    permission_classes = [PlatformAdminOnly]

    def get_queryset(self):
        queryset = FailoverEvent.objects.all()
        model = self.request.query_params.get("model")
        return queryset.filter(model=model) if model else queryset
