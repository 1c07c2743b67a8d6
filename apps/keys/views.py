"""Console pages of the keys app: each keyring's versions, their age and rows, and rotation."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.core.mixins import get_tenant_or_404, is_htmx
from apps.core.roles import tenant_ids_for, user_can

from . import services
from .errors import KeyringDestroyedError
from .forms import RotateKeyForm
from .models import DataKey, Keyring, KeyState
from .selectors import latest_job, versions_with_usage

PLATFORM_SLUG = "platform"


def _keyring_or_404(user, tenant_id: str, action: str):
    """(tenant object or None for the platform, keyring id); 404/403 as every console page."""
    if tenant_id == PLATFORM_SLUG:
        if not (user.is_authenticated and user.is_platform_admin):
            raise Http404
        return None, ""
    tenant = get_tenant_or_404(user, tenant_id, action)
    return tenant, tenant.pk


@login_required
def index(request):
    """Keyrings the user may inspect, with their primary version and its age."""
    user = request.user
    if user.is_platform_admin:
        rings = Keyring.objects.all()
    else:
        rings = Keyring.objects.filter(tenant_id__in=tenant_ids_for(user, "audit"))
    primaries = {key.tenant_id: key for key in DataKey.objects.filter(state=KeyState.PRIMARY,
                                                                       tenant_id__in=[r.tenant_id for r in rings])}
    pending = set(DataKey.objects.filter(state=KeyState.DECRYPT_ONLY).values_list("tenant_id", flat=True))
    items = [{"ring": ring, "slug": ring.tenant_id or PLATFORM_SLUG, "primary": primaries.get(ring.tenant_id),
              "pending": ring.tenant_id in pending} for ring in rings]
    return render(request, "keys/index.html", {"items": items})


@login_required
def keyring(request, tenant_id):
    tenant, ring_id = _keyring_or_404(request.user, tenant_id, "audit")
    context = _keyring_context(request, tenant, ring_id, tenant_id)
    return render(request, "keys/_versions.html" if context["partial"] else "keys/keyring.html", context)


@login_required
@require_POST
def rotate(request, tenant_id):
    tenant, ring_id = _keyring_or_404(request.user, tenant_id, "manage")
    if tenant is not None and not user_can(request.user, tenant.pk, "manage"):
        raise PermissionDenied("Your role does not allow this on this tenant.")
    form = RotateKeyForm(request.POST)
    status = 200
    if form.is_valid():
        try:
            key = services.rotate_tenant_key(tenant_id=ring_id or None, actor=request.user, request=request,
                                             reason=form.cleaned_data["reason"])
        except KeyringDestroyedError as exc:
            messages.error(request, str(exc))
            status = 409
        else:
            messages.success(request, f"Version {key.version} is now primary; older rows are being re-encrypted.")
            if not is_htmx(request):
                return redirect("keys:keyring", tenant_id=tenant_id)
            form = RotateKeyForm()
    else:
        status = 400
    context = _keyring_context(request, tenant, ring_id, tenant_id, form=form)
    return render(request, "keys/_versions.html" if context["partial"] else "keys/keyring.html", context,
                  status=status)


def _keyring_context(request, tenant, ring_id: str, slug: str, form=None) -> dict:
    versions = versions_with_usage(ring_id or None)
    ring = Keyring.objects.filter(tenant_id=ring_id).first()
    can_rotate = (request.user.is_platform_admin if tenant is None else user_can(request.user, tenant.pk, "manage"))
    job = latest_job(ring_id or None)
    return {
        "tenant": tenant, "slug": slug, "title": tenant.name if tenant else "Platform keyring",
        "ring": ring, "versions": versions, "job": job, "form": form or RotateKeyForm(),
        "can_rotate": can_rotate and not (ring and ring.destroyed_at),
        "total_rows": sum(v.rows for v in versions),
        "refresh": bool(job and job.status == "running"),
        "partial": is_htmx(request),
    }
