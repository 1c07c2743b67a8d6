"""Every tenant-scoped console page and API route: the outsider gets 404, insiders never 404 or 500,
and roles get what the permission table allows. Routes are read from the URLconf."""

from __future__ import annotations

import pytest

from apps.core.roles import user_can
from apps.tenants.models import Department, Project, ResourceAllocation
from tests.url_matrix import build_path, tenant_routes

# For console routes whose extra kwargs are not a DRF model pk: url name -> model to take an
# instance of tenant A from. New routes with unknown kwargs make the test fail until added here.
CONSOLE_OBJECTS = {
    "tenants:department-edit": Department,
    "tenants:project-edit": Project,
    "tenants:member-edit": "membership",
    "tenants:allocation-release": ResourceAllocation,
    # accounts: a tenant's identity-provider settings pages.
    "accounts:provider-edit": "accounts.IdentityProvider",
    "accounts:provider-test": "accounts.IdentityProvider",
    "accounts:provider-delete": "accounts.IdentityProvider",
    "core:notification-edit": "core.NotificationChannel",
    "core:notification-delete": "core.NotificationChannel",
    "core:notification-test": "core.NotificationChannel",
    "gateway:api-key-revoke": "gateway.ApiKey",
    "billing:budget-delete": "billing.Budget",
    "billing:invoice": "billing.Invoice",
    "billing:invoice-download": "billing.Invoice",
    "audit:event": "audit.AuditEvent",
    "accounts:user-sessions": "member-user",
}
# Routes that answer 400 without their query parameters (a correct answer to a bare GET).
NEEDS_QUERY = {"sla:report-download"}
# URL kwargs that are not object ids: a valid value for each.
STATIC_KWARGS = {"fmt": "csv"}

# Routes whose GET needs more than "view" (url name -> action).
GET_ACTIONS = {
    "tenants:edit": "manage",
    "tenants:department-edit": "manage",
    "tenants:project-edit": "manage",
    "tenants:member-edit": "manage",
    "accounts:provider-list": "manage",
    "accounts:provider-new": "manage",
    "accounts:provider-edit": "manage",
    "keys:keyring": "audit",
    "tenant-key-list": "audit",
    "tenant-key-detail": "audit",
    "audit:event": "audit",
    "accounts:user-sessions": "manage",
}


@pytest.fixture
def tenant_a_objects(personas):
    from tests.factories import populate_tenant

    populate_tenant(personas.tenant_a, personas.a_admin)
    return personas.tenant_a


def _object_pk(route, tenant, personas):
    from django.apps import apps

    target = CONSOLE_OBJECTS.get(route.name) or route.model
    if target == "membership":
        return personas.a_member.memberships.get(tenant=tenant).pk
    if target == "member-user":
        return personas.a_member.pk
    if isinstance(target, str):
        target = apps.get_model(target)
    if target is None:
        return None
    field = getattr(target, "tenant_field", None) or ("tenant" if any(f.name == "tenant" for f in target._meta.fields) else None)
    instance = target._default_manager.filter(**{field: tenant.pk}).first() if field else None
    return instance.pk if instance else None


def _requests_for(route, personas, tenant):
    values = {"tenant_id": tenant.pk, "tenant_pk": tenant.pk}
    viewset = getattr(route.callback, "cls", None)
    for kwarg in route.kwargs:
        if kwarg in values:
            continue
        if kwarg in STATIC_KWARGS:
            values[kwarg] = STATIC_KWARGS[kwarg]
            continue
        pk = _object_pk(route, tenant, personas)
        if pk is not None and viewset is not None:
            lookup_field = getattr(viewset, "lookup_field", "pk")
            instance = route.model._default_manager.get(pk=pk)
            pk = getattr(instance, lookup_field)
        if pk is None:
            pytest.fail(f"route {route.name or route.pattern} has kwarg {kwarg!r}: add it to CONSOLE_OBJECTS "
                        f"or create a tenant A object for it in tenant_a_objects")
        values[kwarg] = pk
    path = build_path(route, values)
    if route.actions:
        methods = [m for m in ("get", "post") if m in route.actions] or [next(iter(route.actions))]
    else:
        methods = ["get"]
    return path, methods


def _call(client, method, path):
    if method in ("get", "delete"):
        return getattr(client, method)(path, HTTP_ACCEPT="text/html")
    return getattr(client, method)(path, data={}, content_type="application/json")


def test_matrix_covers_routes_of_every_app(tenant_a_objects):
    names = {route.name.split(":")[0] for route in tenant_routes(CONSOLE_OBJECTS) if ":" in route.name}
    assert "tenants" in names
    assert len(tenant_routes(CONSOLE_OBJECTS)) >= 10


def test_outsider_gets_404_on_every_tenant_scoped_route(personas, tenant_a_objects, client_for):
    outsider = client_for(personas.b_admin)
    failures = []
    for route in tenant_routes(CONSOLE_OBJECTS):
        path, methods = _requests_for(route, personas, tenant_a_objects)
        for method in methods:
            response = _call(outsider, method, path)
            if response.status_code == 405 and method == "get":
                method, response = "post", _call(outsider, "post", path)
            if response.status_code != 404:
                failures.append(f"{method.upper()} {path} ({route.name}) -> {response.status_code}")
    assert not failures, "outsider reached tenant A:\n" + "\n".join(failures)


@pytest.mark.parametrize("persona", ["platform_admin", "a_admin", "a_member", "a_viewer", "a_auditor"])
def test_insiders_get_what_their_role_allows_and_never_a_404_or_500(persona, personas, tenant_a_objects, client_for):
    user = getattr(personas, persona)
    client = client_for(user)
    failures = []
    for route in tenant_routes(CONSOLE_OBJECTS):
        path, methods = _requests_for(route, personas, tenant_a_objects)
        if "get" not in methods:
            continue
        response = _call(client, "get", path)
        if response.status_code == 405:
            continue
        action = GET_ACTIONS.get(route.name)
        status = response.status_code
        if route.name in NEEDS_QUERY and status == 400:
            continue
        tenant_url = any(k in route.kwargs for k in ("tenant_id", "tenant_pk"))
        if action is not None:
            allowed = user_can(user, tenant_a_objects.pk, action)
        elif persona in ("platform_admin", "a_admin"):
            allowed = True
        else:
            allowed = None  # the role table decides; only 404s and 500s are wrong here
        if status >= 500:
            failures.append(f"GET {path} ({route.name}) -> {status}")
        elif allowed and status >= 400:
            failures.append(f"GET {path} ({route.name}) -> {status}, but the role allows it")
        elif allowed is False and status < 400:
            failures.append(f"GET {path} ({route.name}) -> {status}, but the role lacks {action}")
        elif status == 404 and tenant_url:
            failures.append(f"GET {path} ({route.name}) -> 404 for a member of the tenant (expected 403)")
    assert not failures, f"{persona}:\n" + "\n".join(failures)


@pytest.mark.parametrize("persona", ["a_member", "a_viewer", "a_auditor"])
def test_non_admins_cannot_change_tenant_a(persona, personas, tenant_a_objects, api_for, client_for):
    user = getattr(personas, persona)
    api = api_for(user)
    tenant = tenant_a_objects
    dept = Department.objects.filter(tenant=tenant).first()
    assert api.post(f"/api/v1/tenants/{tenant.pk}/departments/", {"name": "X", "code": "x"}, format="json").status_code == 403
    assert api.patch(f"/api/v1/tenants/{tenant.pk}/departments/{dept.pk}/", {"name": "Y"}, format="json").status_code == 403
    assert api.delete(f"/api/v1/tenants/{tenant.pk}/departments/{dept.pk}/").status_code == 403
    assert api.patch(f"/api/v1/tenants/{tenant.pk}/", {"name": "Renamed"}, format="json").status_code == 403
    console = client_for(user)
    assert console.post(f"/tenants/{tenant.pk}/departments/", {"name": "X", "code": "x"}).status_code == 403
    assert Department.objects.filter(tenant=tenant).count() == 1
