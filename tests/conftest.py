"""Shared fixtures: personas (platform admin, tenant A admin/member/viewer/auditor, tenant B
admin), clients signed in as each, and an isolated Redis namespace per test process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from django.conf import settings

# Settings give each test process its own Redis key namespace; servers and workers that tests
# start inherit it through the environment.
os.environ["SWITCHYARD_REDIS_PREFIX"] = settings.REDIS_KEY_PREFIX
os.environ.setdefault("SWITCHYARD_ENV", "test")

PASSWORD = "correct-horse-battery-staple"


@dataclass
class Personas:
    platform_admin: object
    tenant_a: object
    tenant_b: object
    a_admin: object
    a_member: object
    a_viewer: object
    a_auditor: object
    b_admin: object

    def all_users(self) -> dict[str, object]:
        return {
            "platform_admin": self.platform_admin,
            "a_admin": self.a_admin,
            "a_member": self.a_member,
            "a_viewer": self.a_viewer,
            "a_auditor": self.a_auditor,
            "b_admin": self.b_admin,
        }


def make_user(email: str, *, platform_admin: bool = False, password: str = PASSWORD, **extra):
    from apps.accounts.models import User

    return User.objects.create_user(email, password, is_platform_admin=platform_admin, name=email.split("@")[0], **extra)


def make_tenant(tenant_id: str, **fields):
    from apps.tenants.models import Tenant

    fields.setdefault("name", tenant_id.replace("-", " ").title())
    return Tenant.objects.create(id=tenant_id, **fields)


def add_member(tenant, user, role):
    from apps.tenants.models import Membership

    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    user.forget_tenant_roles()
    return membership


@pytest.fixture
def personas(db) -> Personas:
    from apps.core.roles import Role

    tenant_a = make_tenant("tenant-a", name="Tenant A")
    tenant_b = make_tenant("tenant-b", name="Tenant B")
    people = Personas(
        platform_admin=make_user("root@platform.test", platform_admin=True),
        tenant_a=tenant_a,
        tenant_b=tenant_b,
        a_admin=make_user("admin@a.test"),
        a_member=make_user("member@a.test"),
        a_viewer=make_user("viewer@a.test"),
        a_auditor=make_user("auditor@a.test"),
        b_admin=make_user("admin@b.test"),
    )
    add_member(tenant_a, people.a_admin, Role.TENANT_ADMIN)
    add_member(tenant_a, people.a_member, Role.MEMBER)
    add_member(tenant_a, people.a_viewer, Role.VIEWER)
    add_member(tenant_a, people.a_auditor, Role.AUDITOR)
    add_member(tenant_b, people.b_admin, Role.TENANT_ADMIN)
    return people


@pytest.fixture
def client_for(db):
    """client_for(user) -> a django.test.Client signed in as that user."""
    from django.test import Client

    def make(user):
        client = Client()
        client.force_login(user, backend="apps.accounts.backends.EmailPasswordBackend")
        # Mark the session as having passed MFA (the accounts MFA middleware checks this flag);
        # tests/accounts and tests/e2e exercise the real MFA path.
        import time

        session = client.session
        session["mfa_verified_at"] = time.time()
        session.save()
        return client

    return make


@pytest.fixture
def api_for(db):
    """api_for(user) -> a DRF APIClient authenticated as that user."""
    from rest_framework.test import APIClient

    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def redis_client():
    """The project's Redis client, with this test process's keys removed afterwards."""
    from django.conf import settings

    from apps.core.redis import get_redis

    client = get_redis()
    yield client
    for name in client.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000):
        client.delete(name)
