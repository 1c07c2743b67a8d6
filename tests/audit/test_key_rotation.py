"""Audit details through the tenant key's life: rotation, re-encryption, destruction."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.audit.selectors import details_of
from apps.audit.services import record_event
from apps.audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def test_rotation_and_reencryption_leave_audit_details_readable_and_the_chain_intact(personas):
    from apps.keys.models import DataKey, KeyState
    from apps.keys.services import reencrypt_tenant, rotate_tenant_key

    before = record_event(action="secret.thing", tenant_id="tenant-a", details={"n": 1})
    rotate_tenant_key(tenant_id="tenant-a", actor=personas.a_admin, enqueue_reencrypt=False)
    after = record_event(action="secret.thing", tenant_id="tenant-a", details={"n": 2})
    reencrypt_tenant(tenant_id="tenant-a")
    stored_before = AuditEvent.objects.get(pk=before.pk)
    assert stored_before.details == before.details  # the chain covers the ciphertext: never rewritten
    assert stored_before.details.split(":")[1] != AuditEvent.objects.get(pk=after.pk).details.split(":")[1]
    # The version still sealing audit rows is kept (decrypt-only), not retired.
    states = dict(DataKey.objects.filter(tenant_id="tenant-a").values_list("version", "state"))
    assert KeyState.RETIRED not in states.values() and KeyState.PRIMARY in states.values()
    assert details_of(personas.a_auditor, stored_before) == {"n": 1}
    assert details_of(personas.a_auditor, AuditEvent.objects.get(pk=after.pk)) == {"n": 2}
    assert AuditEvent.objects.filter(action="key.rotate", tenant_id="tenant-a").exists() or AuditEvent.objects.filter(action__startswith="key.").exists()
    assert verify_chain("tenant-a").ok


def test_after_the_keys_are_destroyed_details_fail_clearly_and_the_chain_still_verifies(personas):
    from apps.keys.errors import DecryptionError
    from apps.keys.services import decrypt, destroy_tenant_keys

    event = record_event(action="secret.thing", tenant_id="tenant-a", details={"card": "4111"})
    destroy_tenant_keys(tenant_id="tenant-a")
    stored = AuditEvent.objects.get(pk=event.pk)
    with pytest.raises(DecryptionError) as caught:
        decrypt(tenant_id="tenant-a", token=stored.details, table="audit_event", row=str(stored.pk), field="details")
    assert "4111" not in str(caught.value)
    assert "cannot decrypt" in details_of(personas.platform_admin, stored)["_unreadable"]
    assert verify_chain("tenant-a").ok  # verification needs no keys


def test_a_details_ciphertext_moved_to_another_event_fails_to_decrypt(personas):
    first = record_event(action="a", tenant_id="tenant-a", details={"x": 1})
    second = record_event(action="b", tenant_id="tenant-a", details={"x": 2})
    moved = AuditEvent.objects.get(pk=second.pk)
    moved.details = first.details
    assert "_unreadable" in details_of(personas.a_auditor, moved)
