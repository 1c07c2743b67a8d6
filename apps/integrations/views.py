"""Console pages: choose the export options, preview and download each API gateway configuration."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render

from . import exports, services
from .forms import ExportOptionsForm

PREVIEW_CHARS = 20_000


def _require_platform_admin(user) -> None:
    if not user.is_platform_admin:
        raise PermissionDenied("Only platform admins can export the API gateway configuration.")


@login_required
def index(request):
    _require_platform_admin(request.user)
    form = ExportOptionsForm.with_defaults(request.GET or None)
    preview = None
    kind = request.GET.get("preview", "")
    if form.is_bound and form.is_valid() and kind in exports.BUILDERS and kind != "apigee":
        artifact = exports.build(kind, form.options())
        text = artifact.content.decode()
        preview = {"kind": kind, "label": exports.BUILDERS[kind][0], "text": text[:PREVIEW_CHARS],
                   "truncated": len(text) > PREVIEW_CHARS}
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "integrations/index.html", {
        "form": form, "kinds": [(k, label) for k, (label, _b) in exports.BUILDERS.items()],
        "tenants": exports.tenant_limits(), "preview": preview, "query": request.GET.urlencode(),
    }, status=status)


@login_required
def download(request, kind: str):
    _require_platform_admin(request.user)
    if kind not in exports.BUILDERS:
        raise Http404("No such export.")
    form = ExportOptionsForm.with_defaults(request.GET)
    if not form.is_valid():
        return render(request, "integrations/index.html", {
            "form": form, "kinds": [(k, label) for k, (label, _b) in exports.BUILDERS.items()],
            "tenants": exports.tenant_limits(), "preview": None, "query": "",
        }, status=400)
    artifact = services.export_artifact(actor=request.user, kind=kind, options=form.options(), request=request)
    response = HttpResponse(artifact.content, content_type=artifact.content_type)
    response["Content-Disposition"] = f'attachment; filename="{artifact.filename}"'
    return response
