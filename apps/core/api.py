"""DRF building blocks: pagination and the tenant-scoped base viewsets every API uses."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from rest_framework import permissions, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError

from .roles import user_can


def service_call(fn, **kwargs):
    """Run a service; its Django ValidationError becomes a DRF 400 with field messages."""
    try:
        return fn(**kwargs)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}) from None


class PlatformAdminOnly(permissions.BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_platform_admin)


class ScopedViewSet(viewsets.GenericViewSet):
    """Reads go through `Model.objects.restrict(user, "view")`, so another tenant's row is a 404.

    `action_permissions` maps a viewset action to the role action it needs on the object's
    tenant (a same-tenant user without it gets 403). Writes default to "manage".
    """

    action_permissions: dict[str, str] = {"list": "view", "retrieve": "view"}
    default_write_action = "manage"

    def required_action(self) -> str:
        return self.action_permissions.get(self.action, self.default_write_action)

    def scoped_queryset(self):
        return self.queryset.model.objects.restrict(self.request.user, "view")

    def get_queryset(self):
        return self.scoped_queryset()

    def check_object_permissions(self, request, obj):
        super().check_object_permissions(request, obj)
        tenant_id = _tenant_id_of(obj)
        if not user_can(request.user, tenant_id, self.required_action()):
            raise PermissionDenied("Your role does not allow this on this tenant.")


class TenantChildViewSet(ScopedViewSet):
    """A resource nested under /tenants/{tenant_pk}/: the tenant is resolved (404 if not
    visible) and the role checked (403) before anything else happens."""

    tenant_lookup_kwarg = "tenant_pk"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        from django.apps import apps

        tenant_model = apps.get_model("tenants", "Tenant")
        self.tenant = get_object_or_404(
            tenant_model.objects.restrict(request.user, "view"), pk=kwargs[self.tenant_lookup_kwarg]
        )
        if not self.detail:
            if not user_can(request.user, self.tenant.pk, self.required_action()):
                raise PermissionDenied("Your role does not allow this on this tenant.")

    def get_queryset(self):
        return self.queryset.model.objects.restrict(self.request.user, "view").filter(tenant=self.tenant)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["tenant"] = getattr(self, "tenant", None)
        return context


def _tenant_id_of(obj) -> str:
    path = getattr(type(obj), "tenant_field", "tenant")
    if path == "pk":
        return str(obj.pk)
    value = obj
    for part in path.split("__"):
        value = getattr(value, part)
    return str(value.pk if hasattr(value, "pk") else value)
