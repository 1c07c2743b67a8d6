"""Management API for regions and deployments: platform admins write; tenant admins read their dedicated ones."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated

from apps.core.api import PlatformAdminOnly, service_call
from apps.core.roles import user_can
from apps.tenants.models import Tenant

from . import health, selectors, services
from .models import Deployment, Region


class RegionSerializer(serializers.ModelSerializer):
    id = serializers.CharField(max_length=63)

    class Meta:
        model = Region
        fields = ["id", "name", "group", "enabled", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_id(self, value):
        if self.instance is not None and value != self.instance.pk:
            raise serializers.ValidationError("A region's id cannot change.")
        return value


class RegionViewSet(viewsets.ModelViewSet):
    """Regions and their residency group. Any signed-in user reads; platform admins write."""

    serializer_class = RegionSerializer
    queryset = Region.objects.all()

    def get_queryset(self):
        return selectors.regions_for(self.request.user)

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [IsAuthenticated()]
        return [PlatformAdminOnly()]

    def perform_create(self, serializer):
        serializer.instance = service_call(services.create_region, actor=self.request.user, request=self.request,
                                            **serializer.validated_data)

    def perform_update(self, serializer):
        changes = dict(serializer.validated_data)
        changes.pop("id", None)
        serializer.instance = service_call(services.update_region, actor=self.request.user,
                                            region=serializer.instance, request=self.request, **changes)

    def perform_destroy(self, instance):
        service_call(services.delete_region, actor=self.request.user, region=instance, request=self.request)


class DeploymentSerializer(serializers.ModelSerializer):
    """`api_key` is write-only: it is encrypted at rest and never returned; `has_api_key` says if one is set.
    On update, leave `api_key` out to keep the stored one, send "" or null to clear it."""

    region = serializers.PrimaryKeyRelatedField(queryset=Region.objects.all())
    tenant = serializers.PrimaryKeyRelatedField(queryset=Tenant.objects.all(), allow_null=True, required=False)
    api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, allow_null=True,
                                    max_length=4000, trim_whitespace=True, style={"input_type": "password"})
    has_api_key = serializers.SerializerMethodField()
    extra_headers = serializers.DictField(child=serializers.CharField(max_length=4000), required=False)
    cooling_down = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "model", "provider", "upstream_model", "base_url", "api_key", "has_api_key",
            "extra_headers", "region", "tenant", "priority", "timeout_seconds", "enabled", "cooling_down",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_has_api_key(self, obj) -> bool:
        # The column is checked, not the attribute: reading the attribute would decrypt the credential.
        return obj.__dict__.get("api_key") is not None

    def get_cooling_down(self, obj) -> bool:
        return health.is_cooling_down(obj.pk)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and not getattr(request.user, "is_platform_admin", False):
            # Header values can be credentials; a tenant admin's read-only view shows only their names.
            data["extra_headers"] = {name: "********" for name in data.get("extra_headers") or {}}
        return data


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Model deployments. Platform admins see and change all of them; a tenant admin reads the
    deployments dedicated to the tenant (another tenant's deployment is a 404, a member gets 403)."""

    serializer_class = DeploymentSerializer
    queryset = Deployment.objects.all()
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_permissions(self):
        # Writes to an existing deployment look it up first, so another tenant's deployment is a 404
        # before the role check makes it a 403.
        if self.action == "create":
            return [PlatformAdminOnly()]
        return [IsAuthenticated()]

    def get_queryset(self):
        user = self.request.user
        queryset = selectors.deployments_for(user, "manage" if self.action == "list" else "view")
        params = self.request.query_params
        for name in ("model", "region", "provider"):
            if params.get(name):
                queryset = queryset.filter(**{name: params[name]})
        if params.get("tenant"):
            queryset = queryset.filter(tenant=params["tenant"])
        if params.get("shared") in ("true", "1"):
            queryset = queryset.filter(tenant__isnull=True)
        return queryset

    def get_object(self):
        obj = get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        user = self.request.user
        if user.is_platform_admin:
            return obj
        if self.action != "retrieve":
            raise PermissionDenied("Only platform admins can change deployments.")
        if not user_can(user, obj.tenant_id, "manage"):
            raise PermissionDenied("Only the tenant's admins can see its deployments.")
        return obj

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        api_key = data.pop("api_key", None)
        serializer.instance = service_call(services.create_deployment, actor=self.request.user,
                                            request=self.request, api_key=api_key, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        api_key = data.pop("api_key", services.KEEP)
        serializer.instance = service_call(services.update_deployment, actor=self.request.user,
                                            deployment=serializer.instance, request=self.request, api_key=api_key,
                                            **data)

    def perform_destroy(self, instance):
        service_call(services.delete_deployment, actor=self.request.user, deployment=instance, request=self.request)
