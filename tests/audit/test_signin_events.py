"""Sign-ins, sign-outs and failed sign-ins are recorded from day one, whatever the method."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.test import RequestFactory

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_sign_in_is_recorded_on_each_tenant_of_the_user(personas, client_for):
    client_for(personas.a_admin)
    event = AuditEvent.objects.get(action="auth.sign_in")
    assert (event.tenant_id, event.actor_label, event.result) == ("tenant-a", "admin@a.test", "success")


def test_a_failed_sign_in_is_recorded_without_the_password(personas):
    request = RequestFactory().post("/accounts/signin/", REMOTE_ADDR="198.51.100.7")
    assert authenticate(request, email="admin@a.test", password="wrong-password-here") is None
    assert authenticate(request, email="nobody@nowhere.test", password="wrong-password-here") is None
    known = AuditEvent.objects.get(action="auth.sign_in_failed", tenant_id="tenant-a")
    unknown = AuditEvent.objects.get(action="auth.sign_in_failed", tenant_id__isnull=True)
    assert known.result == "failure" and known.ip == "198.51.100.7" and known.user_id == personas.a_admin.pk
    assert unknown.metadata == {"identifier": "nobody@nowhere.test", "known_user": False}
    stored = str(list(AuditEvent.objects.values()))
    assert "wrong-password-here" not in stored


def test_a_platform_admin_without_tenants_signs_in_on_the_platform_chain(personas, client_for):
    client_for(personas.platform_admin)
    assert AuditEvent.objects.get(action="auth.sign_in").tenant_id is None
