"""The tenant-scoped base model and queryset: scoping lives here and nowhere else."""

from django.db import models

from .roles import tenant_ids_for


class TenantScopedQuerySet(models.QuerySet):
    """`restrict(user, action)` is the one way every view, viewset and selector scopes a read."""

    def restrict(self, user, action: str = "view"):
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return self.none()
        if getattr(user, "is_platform_admin", False):
            return self
        field = getattr(self.model, "tenant_field", "tenant")
        return self.filter(**{f"{field}__in": tenant_ids_for(user, action)})

    def for_tenant(self, tenant_id):
        field = getattr(self.model, "tenant_field", "tenant")
        return self.filter(**{field: tenant_id})


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantOwnedModel(TimestampedModel):
    """A row that belongs to one tenant. `tenant_field` names the path to its tenant id."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    tenant_field = "tenant"

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        abstract = True
