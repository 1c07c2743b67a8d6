"""Console pages for a tenant's notification channels: list, add, edit, delete, send a test."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import notifications
from .mixins import get_tenant_or_404, is_htmx, save_form
from .models import ChannelKind, NotificationChannel, NotificationEvent
from .roles import tenant_ids_for


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=ChannelKind.choices)
    target = forms.CharField(
        max_length=2000, label="Address or URL",
        help_text="An email address, or the URL to POST to (webhook, or a Slack-style incoming webhook).",
    )
    secret = forms.CharField(
        required=False, max_length=500, widget=forms.PasswordInput(render_value=False),
        help_text="Webhooks only: signs each message (X-Switchyard-Signature). Leave blank to keep the current one.",
    )
    clear_secret = forms.BooleanField(required=False, label="Remove the signing secret")
    events = forms.MultipleChoiceField(
        choices=[c for c in NotificationEvent.choices if c[0] != NotificationEvent.TEST], required=False,
        widget=forms.CheckboxSelectMultiple, help_text="None selected sends every event.",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not editing:
            del self.fields["clear_secret"]



def _rows(tenant_id: str) -> list[dict]:
    return [
        {"channel": c, "target": notifications.describe_target(c)}
        for c in NotificationChannel.objects.filter(tenant_id=tenant_id).order_by("name")
    ]


@login_required
def channel_index(request):
    """The tenants whose channels this user may manage; straight to the page when there is one."""
    from django.apps import apps

    tenants = apps.get_model("tenants", "Tenant").objects.all()
    if not request.user.is_platform_admin:
        tenants = tenants.filter(pk__in=tenant_ids_for(request.user, "manage"))
    tenants = list(tenants.order_by("name"))
    if len(tenants) == 1:
        return redirect("core:notifications", tenant_id=tenants[0].pk)
    return render(request, "core/notifications_index.html", {"tenants": tenants})


@login_required
def channel_list(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    form = ChannelForm(request.POST or None, initial={"enabled": True})
    done = save_form(
        request, form,
        lambda data: notifications.create_channel(tenant_id=tenant.pk, actor=request.user, request=request, **data),
        message=lambda channel: f"Channel {channel.name} added.",
        then=lambda _: redirect("core:notifications", tenant_id=tenant.pk),
    )
    if done:
        return done
    context = {"tenant": tenant, "tab": "notifications", "can_manage": True, "rows": _rows(tenant.pk), "form": form}
    return render(request, "core/notifications.html", context, status=400 if form.errors else 200)


def _channel(request, tenant_id, pk):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    return tenant, get_object_or_404(NotificationChannel.objects.filter(tenant=tenant), pk=pk)


@login_required
def channel_edit(request, tenant_id, pk):
    tenant, channel = _channel(request, tenant_id, pk)
    initial = {"name": channel.name, "kind": channel.kind, "target": channel.target, "events": channel.events,
               "enabled": channel.enabled}
    form = ChannelForm(request.POST or None, initial=initial, editing=True)
    done = save_form(
        request, form,
        lambda data: notifications.update_channel(channel=channel, actor=request.user, request=request, **data),
        message=lambda _: f"Channel {channel.name} saved.",
        then=lambda _: redirect("core:notifications", tenant_id=tenant.pk),
    )
    if done:
        return done
    context = {"tenant": tenant, "tab": "notifications", "can_manage": True, "channel": channel, "form": form,
               "has_secret": bool(channel.secret)}
    return render(request, "core/notifications_edit.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def channel_delete(request, tenant_id, pk):
    tenant, channel = _channel(request, tenant_id, pk)
    name = channel.name
    notifications.delete_channel(channel=channel, actor=request.user, request=request)
    messages.success(request, f"Channel {name} deleted.")
    return redirect("core:notifications", tenant_id=tenant.pk)


@login_required
@require_POST
def channel_test(request, tenant_id, pk):
    tenant, channel = _channel(request, tenant_id, pk)
    result = notifications.send_test(channel=channel, actor=request.user, request=request)
    if is_htmx(request):
        return render(request, "core/notifications_test_result.html", {"result": result, "channel": channel})
    (messages.success if result.ok else messages.error)(request, f"Test to {channel.name}: {result.detail}")
    return redirect("core:notifications", tenant_id=tenant.pk)
