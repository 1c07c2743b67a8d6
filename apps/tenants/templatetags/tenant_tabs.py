"""The {% tenant_extra_tabs %} tag: tabs registered by other apps, filtered by role."""

from django import template
from django.urls import NoReverseMatch, reverse

from apps.core.roles import user_can
from apps.tenants.tabs import TENANT_TABS

register = template.Library()


@register.simple_tag(takes_context=True)
def tenant_extra_tabs(context, tenant):
    user = context["request"].user
    tabs = []
    for label, url_name, action in TENANT_TABS:
        if not user_can(user, tenant.pk, action):
            continue
        try:
            url = reverse(url_name, args=[tenant.pk])
        except NoReverseMatch:
            continue
        tabs.append({"label": label, "url": url, "active": context["request"].path.startswith(url)})
    return tabs
