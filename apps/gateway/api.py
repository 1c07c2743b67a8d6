"""Management API: tenants' API keys (the secret shown once) and model prices."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import PlatformAdminOnly, TenantChildViewSet, service_call
from apps.tenants.models import Department, Project

from . import services
from .models import ApiKey, ModelPrice


class ApiKeySerializer(serializers.ModelSerializer):
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all(), allow_null=True, required=False)
    department = serializers.PrimaryKeyRelatedField(queryset=Department.objects.all(), allow_null=True, required=False)
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all(), allow_null=True, required=False)
    status = serializers.CharField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "prefix", "status", "user", "department", "project", "expires_at", "revoked_at",
            "last_used_at", "requests_per_minute", "requests_per_day", "tokens_per_month", "max_concurrent",
            "created_at",
        ]
        read_only_fields = ["id", "prefix", "status", "revoked_at", "last_used_at", "created_at"]

    def validate(self, attrs):
        tenant = self.context["tenant"]
        errors = {}
        for name in ("department", "project"):
            value = attrs.get(name)
            if value is not None and value.tenant_id != tenant.pk:
                errors[name] = f"Choose a {name} of this tenant."
        user = attrs.get("user")
        if user is not None and not user.memberships.filter(tenant=tenant).exists():
            errors["user"] = "Choose a member of this tenant."
        if self.instance is not None:
            for name in ("user", "department", "project"):
                if name in attrs and attrs[name] != getattr(self.instance, name):
                    errors[name] = "Attribution cannot change; create a new key."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown this once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.UpdateModelMixin, TenantChildViewSet):
    """A tenant's API keys. Tenant admins create, edit and revoke; the secret is returned once,
    in the create response. DELETE revokes (the row stays for the usage history)."""

    queryset = ApiKey.objects.all()
    serializer_class = ApiKeySerializer
    action_permissions = {"list": "manage", "retrieve": "manage"}

    def get_queryset(self):
        return super().get_queryset().select_related("user", "department", "project")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, secret = service_call(
            services.create_api_key, actor=request.user, tenant=self.tenant, request=request,
            **serializer.validated_data,
        )
        api_key.key = secret
        body = ApiKeyCreatedSerializer(api_key, context=self.get_serializer_context()).data
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def perform_update(self, serializer):
        changes = {k: v for k, v in serializer.validated_data.items() if k not in ("user", "department", "project")}
        serializer.instance = service_call(services.update_api_key, actor=self.request.user,
                                            api_key=serializer.instance, request=self.request, **changes)

    def destroy(self, request, *args, **kwargs):
        api_key = self.get_object()
        services.revoke_api_key(actor=request.user, api_key=api_key, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"])
    def revoke(self, request, *args, **kwargs):
        """Revoke the key at once; returns the key."""
        api_key = services.revoke_api_key(actor=request.user, api_key=self.get_object(), request=request)
        return Response(self.get_serializer(api_key).data)


class ModelPriceSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelPrice
        fields = ["id", "model", "input_per_1k", "output_per_1k", "currency", "effective_from", "created_at"]
        read_only_fields = ["id", "created_at"]


class ModelPriceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        viewsets.GenericViewSet):
    """Model prices with their history. Any signed-in user reads; platform admins add a price
    (a new row from its effective date; past prices are never edited)."""

    queryset = ModelPrice.objects.all()
    serializer_class = ModelPriceSerializer

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [permissions.IsAuthenticated()]
        return [permissions.IsAuthenticated(), PlatformAdminOnly()]

    def get_queryset(self):
        queryset = ModelPrice.objects.all()
        model = self.request.query_params.get("model")
        return queryset.filter(model=model) if model else queryset

    def perform_create(self, serializer):
        serializer.instance = service_call(services.set_model_price, actor=self.request.user,
                                            request=self.request, **serializer.validated_data)
