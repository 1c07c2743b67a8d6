"""Management API: fetch the API gateway exports (platform admins only)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from apps.core.api import PlatformAdminOnly

from . import exports, services


class ExportSerializer(serializers.Serializer):
    """One export kind; as a query, its options (each defaults to the install's settings)."""

    kind = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    url = serializers.CharField(read_only=True)
    upstream_url = serializers.URLField(required=False, max_length=500, write_only=True)
    log_endpoint = serializers.URLField(required=False, max_length=500, write_only=True)
    jwks_url = serializers.URLField(required=False, max_length=500, write_only=True)

    def options(self) -> exports.ExportOptions:
        defaults = exports.ExportOptions.defaults()
        data = self.validated_data
        return exports.ExportOptions(
            upstream_url=data.get("upstream_url", defaults.upstream_url).rstrip("/"),
            log_endpoint=data.get("log_endpoint", defaults.log_endpoint),
            jwks_url=data.get("jwks_url", defaults.jwks_url),
        )


class ExportViewSet(viewsets.ViewSet):
    """GET /api/v1/integrations/exports/ lists the kinds; GET .../exports/{kind}/ returns the file itself
    (YAML, JSON or a zip) with its filename in Content-Disposition."""

    permission_classes = [PlatformAdminOnly]
    serializer_class = ExportSerializer
    lookup_field = "kind"
    lookup_value_regex = "[a-z-]+"

    @extend_schema(responses=ExportSerializer(many=True))
    def list(self, request):
        rows = [{"kind": kind, "label": label, "url": request.build_absolute_uri(f"{kind}/")}
                for kind, (label, _builder) in exports.BUILDERS.items()]
        return Response(ExportSerializer(rows, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter(name, OpenApiTypes.URI, required=False)
                    for name in ("upstream_url", "log_endpoint", "jwks_url")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def retrieve(self, request, kind=None):
        if kind not in exports.BUILDERS:
            raise NotFound(f"No export named {kind!r}; choose one of {', '.join(exports.BUILDERS)}.")
        params = ExportSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        artifact = services.export_artifact(actor=request.user, kind=kind, options=params.options(), request=request)
        response = HttpResponse(artifact.content, content_type=artifact.content_type)
        response["Content-Disposition"] = f'attachment; filename="{artifact.filename}"'
        return response
