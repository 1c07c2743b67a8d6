"""Management API of a tenant's data keys: list versions (with rows protected) and rotate."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from apps.core.api import TenantChildViewSet

from . import services
from .errors import KeyringDestroyedError
from .models import DataKey, ReencryptionJob
from .selectors import latest_job, version_row_counts


class KeysConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class DataKeySerializer(serializers.ModelSerializer):
    """A data key version. Never carries the key, wrapped or not."""

    age_days = serializers.SerializerMethodField()
    rows_protected = serializers.SerializerMethodField()

    class Meta:
        model = DataKey
        fields = ["version", "state", "kek_id", "created_at", "age_days", "rows_protected",
                  "demoted_at", "retired_at", "destroyed_at"]
        read_only_fields = fields

    def get_age_days(self, key) -> int:
        from django.utils import timezone

        return (timezone.now() - key.created_at).days

    def get_rows_protected(self, key) -> int:
        return self.context.get("row_counts", {}).get(key.version, 0)


class ReencryptionJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReencryptionJob
        fields = ["target_version", "status", "rows_reencrypted", "rows_failed", "runs", "started_at",
                  "updated_at", "finished_at"]
        read_only_fields = fields


class RotateSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=100, required=False, allow_blank=True, default="manual")


class DataKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantChildViewSet):
    """GET lists the tenant's key versions with the rows each protects; GET reencryption/ shows
    the latest re-encryption job; POST rotate/ makes a new version primary and queues
    re-encryption. Reading needs the audit role (tenant admins, auditors); rotating, manage."""

    queryset = DataKey.objects.all()
    serializer_class = DataKeySerializer
    lookup_field = "version"
    lookup_value_regex = "[0-9]+"
    action_permissions = {"list": "audit", "retrieve": "audit", "reencryption": "audit", "rotate": "manage"}
    pagination_class = None

    def get_queryset(self):
        return DataKey.objects.restrict(self.request.user, "view").filter(tenant_id=self.tenant.pk).order_by("-version")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "tenant", None) is not None and self.action in ("list", "retrieve", "rotate"):
            context["row_counts"] = version_row_counts(self.tenant.pk)
        return context

    @extend_schema(responses={200: ReencryptionJobSerializer, 204: None})
    @action(detail=False, methods=["get"])
    def reencryption(self, request, *args, **kwargs):
        """The tenant's latest re-encryption job; 204 before the first rotation."""
        job = latest_job(self.tenant.pk)
        if job is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ReencryptionJobSerializer(job).data)

    @extend_schema(request=RotateSerializer, responses={201: DataKeySerializer})
    @action(detail=False, methods=["post"])
    def rotate(self, request, *args, **kwargs):
        body = RotateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            key = services.rotate_tenant_key(tenant_id=self.tenant.pk, actor=request.user, request=request,
                                             reason=body.validated_data.get("reason") or "manual")
        except KeyringDestroyedError as exc:
            raise KeysConflict(str(exc)) from None
        return Response(self.get_serializer(key).data, status=status.HTTP_201_CREATED)
