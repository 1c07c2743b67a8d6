"""Every SLA route scoped to a tenant, read from the URLconf: the outsider gets 404 for tenant A,
its users never a 404 or a 500."""

from __future__ import annotations

import pytest

from tests.url_matrix import build_path, tenant_routes


def sla_routes():
    routes = [r for r in tenant_routes() if r.name.startswith("sla") or "/sla/" in r.pattern or r.pattern.startswith("sla/")]
    assert len(routes) >= 10
    return routes


def _methods(route):
    return [m for m in ("get", "post", "put", "delete") if m in route.actions] if route.actions else ["get", "post"]


def test_the_outsider_gets_404_on_every_sla_route_of_another_tenant(personas, client_for, api_for):
    failures = []
    for route in sla_routes():
        path = build_path(route, {"tenant_id": "tenant-a", "tenant_pk": "tenant-a"})
        client = api_for(personas.b_admin) if path.startswith("/api/") else client_for(personas.b_admin)
        for method in _methods(route):
            response = getattr(client, method)(path, {}, format="json") if path.startswith("/api/") else getattr(client, method)(path)
            if response.status_code != 404:
                failures.append(f"{method.upper()} {path} -> {response.status_code}")
    assert not failures, failures


@pytest.mark.parametrize("persona", ["platform_admin", "a_admin", "a_member", "a_viewer", "a_auditor"])
def test_tenant_users_never_get_404_or_500_on_their_sla_pages(persona, personas, client_for, api_for):
    user = getattr(personas, persona)
    failures = []
    for route in sla_routes():
        path = build_path(route, {"tenant_id": "tenant-a", "tenant_pk": "tenant-a"})
        client = api_for(user) if path.startswith("/api/") else client_for(user)
        response = client.get(path)
        if response.status_code == 404 or response.status_code >= 500:
            failures.append(f"GET {path} -> {response.status_code}")
    assert not failures, failures
