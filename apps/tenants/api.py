"""Management API for tenants, departments, projects, memberships, pools and allocations."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.core.api import PlatformAdminOnly, ScopedViewSet, TenantChildViewSet, service_call
from apps.core.roles import Role

from . import selectors, services
from .models import RESOURCE_FIELDS, Department, Membership, Project, ResourceAllocation, ResourcePool, Tenant


class TenantSerializer(serializers.ModelSerializer):
    id = serializers.CharField(max_length=63)

    class Meta:
        model = Tenant
        fields = [
            "id", "name", "tier", "status", "isolation_mode",
            "requests_per_minute", "requests_per_day", "tokens_per_month", "max_concurrent", "allowed_models",
            "data_residency", "store_content", "encrypt_content", "retention_days", "key_rotation_days",
            "mfa_required", "redis_outage_mode", "created_at", "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_id(self, value):
        if self.instance is not None and value != self.instance.pk:
            raise serializers.ValidationError("A tenant's id cannot change.")
        if self.instance is None and Tenant.objects.filter(pk=value).exists():
            raise serializers.ValidationError("A tenant with this id already exists.")
        return value


class TenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.UpdateModelMixin, mixins.DestroyModelMixin, ScopedViewSet):
    """Tenants. Platform admins create and delete; tenant admins edit their tenant's settings."""

    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    action_permissions = {"list": "view", "retrieve": "view", "update": "manage", "partial_update": "manage"}

    def get_queryset(self):
        return selectors.tenants_for(self.request.user, search=self.request.query_params.get("search", ""),
                                     status=self.request.query_params.get("status", ""))

    def get_permissions(self):
        if self.action in ("create", "destroy"):
            return [PlatformAdminOnly()]
        return super().get_permissions()

    def perform_create(self, serializer):
        serializer.instance = service_call(services.create_tenant, actor=self.request.user, request=self.request,
                                            **serializer.validated_data)

    def perform_update(self, serializer):
        changes = dict(serializer.validated_data)
        changes.pop("id", None)
        if not self.request.user.is_platform_admin:
            forbidden = sorted(
                f for f in set(changes) & services.PLATFORM_ONLY_FIELDS if changes[f] != getattr(serializer.instance, f)
            )
            if forbidden:
                raise PermissionDenied(f"Only platform admins may change: {', '.join(forbidden)}.")
        serializer.instance = service_call(services.update_tenant, actor=self.request.user, tenant=serializer.instance,
                                            request=self.request, **changes)

    def perform_destroy(self, instance):
        services.delete_tenant(actor=self.request.user, tenant=instance, request=self.request)


class DepartmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Department
        fields = ["id", "name", "code", "cost_center", "created_at"]
        read_only_fields = ["id", "created_at"]


class _ChildViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantChildViewSet):
    save_service = None

    def perform_create(self, serializer):
        serializer.instance = service_call(type(self).save_service, actor=self.request.user, tenant=self.tenant,
                                            request=self.request, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_child(actor=self.request.user, instance=instance, request=self.request)


class DepartmentViewSet(_ChildViewSet):
    queryset = Department.objects.all()
    serializer_class = DepartmentSerializer
    save_service = services.save_department

    def perform_update(self, serializer):
        serializer.instance = service_call(services.save_department, actor=self.request.user, tenant=self.tenant,
                                            department=serializer.instance, request=self.request,
                                            **serializer.validated_data)


class ProjectSerializer(serializers.ModelSerializer):
    department = serializers.PrimaryKeyRelatedField(queryset=Department.objects.all(), allow_null=True, required=False)

    class Meta:
        model = Project
        fields = ["id", "name", "code", "department", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_department(self, value):
        if value is not None and value.tenant_id != self.context["tenant"].pk:
            raise serializers.ValidationError("Choose a department of this tenant.")
        return value


class ProjectViewSet(_ChildViewSet):
    queryset = Project.objects.all()
    serializer_class = ProjectSerializer
    save_service = services.save_project

    def perform_update(self, serializer):
        serializer.instance = service_call(services.save_project, actor=self.request.user, tenant=self.tenant,
                                            project=serializer.instance, request=self.request,
                                            **serializer.validated_data)


class MembershipSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    user_id = serializers.IntegerField(read_only=True)
    department = serializers.PrimaryKeyRelatedField(queryset=Department.objects.all(), allow_null=True, required=False)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "email", "role", "department", "created_at"]
        read_only_fields = ["id", "user_id", "email", "created_at"]

    def validate_department(self, value):
        if value is not None and value.tenant_id != self.context["tenant"].pk:
            raise serializers.ValidationError("Choose a department of this tenant.")
        return value


class MembershipCreateSerializer(MembershipSerializer):
    email = serializers.EmailField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    password = serializers.CharField(required=False, write_only=True, allow_blank=True, trim_whitespace=False)
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta(MembershipSerializer.Meta):
        fields = [*MembershipSerializer.Meta.fields, "name", "password"]


class MembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantChildViewSet):
    """Members of a tenant. Creating one by email adds an existing user or creates a new one."""

    queryset = Membership.objects.all()
    serializer_class = MembershipSerializer

    def get_queryset(self):
        return super().get_queryset().select_related("user")

    def get_serializer_class(self):
        return MembershipCreateSerializer if self.action == "create" else MembershipSerializer

    @extend_schema(request=MembershipCreateSerializer, responses=MembershipSerializer)
    def create(self, request, *args, **kwargs):
        serializer = MembershipCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        membership = service_call(
            services.add_member, actor=request.user, tenant=self.tenant, email=data["email"], role=data["role"],
            name=data.get("name", ""), password=data.get("password") or None, department=data.get("department"),
            request=request,
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        changes = {k: v for k, v in serializer.validated_data.items() if k in ("role", "department")}
        serializer.instance = service_call(services.change_member, actor=self.request.user,
                                            membership=serializer.instance, request=self.request, **changes)

    def perform_destroy(self, instance):
        services.remove_member(actor=self.request.user, membership=instance, request=self.request)


class ResourcePoolSerializer(serializers.ModelSerializer):
    free = serializers.SerializerMethodField()

    class Meta:
        model = ResourcePool
        fields = ["id", "name", "region", *RESOURCE_FIELDS, "free", "created_at"]
        read_only_fields = ["id", "free", "created_at"]

    def get_free(self, pool) -> dict:
        return services.pool_usage(pool).free


class ResourcePoolViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                          mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Platform-wide capacity pools: everyone signed in reads them, platform admins change them."""

    queryset = ResourcePool.objects.all()
    serializer_class = ResourcePoolSerializer

    def get_permissions(self):
        if self.action in ("create", "update", "partial_update"):
            return [PlatformAdminOnly()]
        return super().get_permissions()

    def perform_create(self, serializer):
        serializer.instance = service_call(services.save_pool, actor=self.request.user, request=self.request,
                                            **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = service_call(services.save_pool, actor=self.request.user, pool=serializer.instance,
                                            request=self.request, **serializer.validated_data)


class AllocationSerializer(serializers.ModelSerializer):
    pool = serializers.PrimaryKeyRelatedField(queryset=ResourcePool.objects.all())

    class Meta:
        model = ResourceAllocation
        fields = ["id", "pool", *RESOURCE_FIELDS, "purpose", "status", "created_at", "released_at"]
        read_only_fields = ["id", "status", "created_at", "released_at"]


class AllocationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantChildViewSet):
    """Reservations of pool capacity. Over-asking is a 400 naming the resource and what is free."""

    queryset = ResourceAllocation.objects.all()
    serializer_class = AllocationSerializer
    action_permissions = {"list": "view", "retrieve": "view", "release": "manage"}

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        pool = data.pop("pool")
        purpose = data.pop("purpose", "")
        serializer.instance = service_call(services.allocate_resources, actor=self.request.user, tenant=self.tenant,
                                            pool=pool, purpose=purpose, request=self.request, **data)

    @extend_schema(request=None, responses=AllocationSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, *args, **kwargs):
        allocation = service_call(services.release_allocation, actor=request.user, allocation=self.get_object(),
                                   request=request)
        return Response(AllocationSerializer(allocation).data)
