"""Tabs that other apps add to a tenant's pages (keys, API keys, usage...).

Higher apps call `register_tab(label, url_name)` from their AppConfig.ready(); the URL name
takes the tenant id as its only argument. This keeps tenants free of imports from above."""

from __future__ import annotations

TENANT_TABS: list[tuple[str, str, str]] = []  # (label, url_name, role action needed)


def register_tab(label: str, url_name: str, action: str = "view") -> None:
    if not any(existing[1] == url_name for existing in TENANT_TABS):
        TENANT_TABS.append((label, url_name, action))
