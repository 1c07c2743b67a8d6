"""Retention: expired events are purged per tenant, the chain stays verifiable from a signed anchor, the purge is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.audit import services, tasks
from apps.audit.models import AuditEvent, Checkpoint, CheckpointKind
from apps.audit.services import record_event, record_events_bulk
from apps.audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def aged(tenant_id: str, days: int, n: int) -> None:
    when = datetime.now(UTC) - timedelta(days=days)
    record_events_bulk([{"action": "old.thing", "tenant_id": tenant_id, "occurred_at": when + timedelta(seconds=i)} for i in range(n)])


def test_the_daily_task_purges_each_tenant_by_its_own_retention(personas):
    personas.tenant_a.retention_days = 30
    personas.tenant_a.save()
    aged("tenant-a", 40, 5)
    aged("tenant-a", 10, 3)
    aged("tenant-b", 40, 4)  # tenant-b keeps 90 days
    services.checkpoint_all_chains()
    assert tasks.purge_expired_events() == {"tenant-a": 5}
    remaining = list(AuditEvent.objects.filter(tenant_id="tenant-a").order_by("seq").values_list("action", "seq"))
    assert remaining == [("old.thing", 6), ("old.thing", 7), ("old.thing", 8), ("audit.retention_purge", 9)]
    assert AuditEvent.objects.filter(tenant_id="tenant-b").count() == 4
    anchor = Checkpoint.objects.get(tenant_id="tenant-a", kind=CheckpointKind.ANCHOR)
    assert anchor.seq == 5
    purge = AuditEvent.objects.get(action="audit.retention_purge")
    assert purge.metadata["deleted"] == 5 and purge.metadata["anchor_checkpoint"] == anchor.pk
    report = verify_chain("tenant-a")
    assert report.ok, report.errors
    assert report.valid_checkpoints == 2
    assert tasks.purge_expired_events() == {}  # idempotent


def test_after_a_purge_an_event_slipped_in_before_the_anchor_is_caught():
    aged("t1", 100, 4)
    services.purge_expired_events(tenant_id="t1", retention_days=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_event (id, tenant_id, seq, occurred_at, actor_type, actor_id, actor_label, action, resource_type,"
            " resource_id, result, ip, user_agent, request_id, metadata, prev_hash, hash)"
            " VALUES (gen_random_uuid(), 't1', 2, now(), 'system', '', 'system', 'forged', '', '', 'success', '', '', '', '{}', '', '')"
        )
    report = verify_chain("t1")
    assert not report.ok and "retention anchor" in report.errors[0]


def test_a_purge_without_an_anchor_is_caught():
    aged("t1", 100, 4)
    record_event(action="new", tenant_id="t1")
    AuditEvent.objects.filter(tenant_id="t1", seq__lte=2).delete()  # a quiet mass delete, no anchor
    report = verify_chain("t1")
    assert not report.ok and "missing (deleted)" in report.errors[0]


def test_retention_must_be_at_least_a_day():
    with pytest.raises(ValueError):
        services.purge_expired_events(tenant_id="t1", retention_days=0)


def test_platform_and_deleted_tenant_chains_keep_their_configured_retention(settings, personas):
    settings.SWITCHYARD_AUDIT_PLATFORM_RETENTION_DAYS = 30
    settings.SWITCHYARD_AUDIT_DELETED_TENANT_RETENTION_DAYS = 60
    aged(None, 40, 2)
    aged("gone-tenant", 50, 2)
    aged("gone-tenant", 70, 1)
    assert tasks.purge_expired_events() == {"platform": 2}
    assert AuditEvent.objects.filter(tenant_id="gone-tenant").count() == 3
    assert verify_chain("").ok
