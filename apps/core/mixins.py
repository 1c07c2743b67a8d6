"""Console view mixins: scoped object lookup (404 for other tenants) and role checks (403)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404

from .roles import user_can


def get_tenant_or_404(user, tenant_id, action: str = "view"):
    """The tenant if the user may see it (else 404), and may do `action` on it (else 403)."""
    from django.apps import apps

    tenant = get_object_or_404(apps.get_model("tenants", "Tenant").objects.restrict(user, "view"), pk=tenant_id)
    if not user_can(user, tenant.pk, action):
        raise PermissionDenied("Your role does not allow this on this tenant.")
    return tenant


class TenantPageMixin(LoginRequiredMixin):
    """A console page under /tenants/<tenant_id>/: sets self.tenant or answers 404/403."""

    tenant_action = "view"

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.tenant = get_tenant_or_404(request.user, kwargs["tenant_id"], self.action_for(request))
        return super().dispatch(request, *args, **kwargs)

    def action_for(self, request) -> str:
        return self.tenant_action

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["tenant"] = self.tenant
        context["can_manage"] = user_can(self.request.user, self.tenant.pk, "manage")
        return context


def save_form(request, form, save, *, message, then):
    """The console's form POST in one place. A valid form's data goes to `save` (the service
    call); a ValidationError it raises goes onto the form, field by field. After a save, `message`
    (text, or a function of save's result) is flashed and `then(result)` is the response; otherwise
    None, and the view renders the form again with its errors."""
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        result = save(form.cleaned_data)
    except ValidationError as exc:
        apply_form_errors(form, exc)
        return None
    messages.success(request, message(result) if callable(message) else message)
    return then(result)


def apply_form_errors(form, exc) -> None:
    """Put a service's ValidationError on the form, field by field."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"
