"""The audit chain: appends, and every kind of tampering caught by verify_audit."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from apps.audit import services
from apps.audit.models import GENESIS_HASH, AuditEvent, ChainHead, Checkpoint
from apps.audit.services import Actor, record_event, record_events_bulk
from apps.audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def append(n: int, tenant_id: str | None = "t1", **extra) -> list[AuditEvent]:
    return [record_event(action="test.action", tenant_id=tenant_id, resource_type="thing", resource_id=str(i), metadata={"i": i}, **extra) for i in range(n)]


def run_verify(*args) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def verify_fails(*args) -> str:
    with pytest.raises(CommandError) as caught:
        run_verify(*args)
    return str(caught.value)


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_events_append_in_order_each_linked_to_the_one_before():
    events = append(5)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    stored = AuditEvent.objects.get(pk=events[-1].pk)
    assert stored.hash == events[-1].hash and stored.seq == 5
    assert ChainHead.objects.get(chain="t1").last_hash == events[-1].hash


def test_each_tenant_and_the_platform_have_their_own_chain():
    append(2, "t1")
    append(3, "t2")
    platform = append(1, None)
    assert platform[0].seq == 1 and platform[0].tenant_id is None
    assert AuditEvent.objects.filter(tenant_id="t2").order_by("seq").last().seq == 3
    assert "3 chains: 6 of 6 events" in run_verify()


def test_actor_kinds_are_recorded_as_user_api_key_or_system(personas):
    class Key:
        pk = uuid.uuid4()
        prefix = "sy_live_ab12"
        user_id = personas.a_member.pk

    by_user = record_event(action="x", tenant_id="tenant-a", actor=personas.a_admin)
    by_key = record_event(action="x", tenant_id="tenant-a", actor=Key())
    by_system = record_event(action="x", tenant_id="tenant-a")
    by_value = record_event(action="x", tenant_id="tenant-a", actor=Actor("user", "7", "someone@a.test", 7))
    assert (by_user.actor_type, by_user.actor_label, by_user.user_id) == ("user", "admin@a.test", personas.a_admin.pk)
    assert (by_key.actor_type, by_key.actor_label, by_key.user_id) == ("api_key", "sy_live_ab12", personas.a_member.pk)
    assert (by_system.actor_type, by_system.actor_label) == ("system", "system")
    assert by_value.user_id == 7
    assert run_verify("--tenant", "tenant-a").startswith("tenant-a: ok")


def test_request_supplies_ip_user_agent_and_request_id(rf):
    request = rf.get("/", HTTP_USER_AGENT="pytest-agent/1.0", REMOTE_ADDR="203.0.113.9")
    request.request_id = "req-123"
    event = record_event(action="x", tenant_id="t1", request=request, metadata={"when": datetime(2026, 1, 1, tzinfo=UTC)})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.ip, stored.user_agent, stored.request_id) == ("203.0.113.9", "pytest-agent/1.0", "req-123")
    assert stored.metadata == {"when": "2026-01-01T00:00:00Z"}
    assert verify_chain("t1").ok


def test_bad_result_or_action_is_refused():
    with pytest.raises(ValueError, match="result must be one of"):
        record_event(action="x", tenant_id="t1", result="maybe")
    with pytest.raises(ValueError, match="action"):
        record_event(action="", tenant_id="t1")


def test_an_event_rolls_back_with_its_callers_transaction_and_the_chain_stays_linear():
    append(2)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(action="rolled.back", tenant_id="t1")
        raise RuntimeError("the change failed")
    after = record_event(action="kept", tenant_id="t1")
    assert after.seq == 3
    assert not AuditEvent.objects.filter(action="rolled.back").exists()
    assert verify_chain("t1").ok


def test_bulk_append_continues_each_chain():
    append(2, "t1")
    count = record_events_bulk(
        [{"action": "gen", "tenant_id": "t1", "metadata": {"n": i}} for i in range(1500)]
        + [{"action": "gen", "tenant_id": "t2"} for _ in range(3)]
    )
    assert count == 1503
    assert ChainHead.objects.get(chain="t1").last_seq == 1502
    record_event(action="after.bulk", tenant_id="t1")
    assert verify_chain("t1").ok and verify_chain("t2").ok
    assert verify_chain("t1").events == 1503


def test_an_edited_event_is_named_by_verify():
    events = append(10)
    services.checkpoint_all_chains()
    sql("UPDATE audit_event SET result = 'failure' WHERE id = %s", [events[4].pk])
    message = verify_fails("--tenant", "t1")
    assert str(events[4].pk) in message


def test_an_edit_with_rehashed_links_is_caught_by_the_signed_checkpoint():
    from apps.audit.chain import body_hash, link_hash

    events = append(6)
    services.checkpoint_all_chains()
    # A careful attacker edits event 3 and recomputes every hash after it, and the head.
    sql("UPDATE audit_event SET action = 'innocent' WHERE id = %s", [events[2].pk])
    prev = events[1].hash
    for event in AuditEvent.objects.filter(tenant_id="t1", seq__gte=3).order_by("seq"):
        row = {f: getattr(event, f) for f in ("id", "tenant_id", "occurred_at", "actor_type", "actor_id", "actor_label", "user_id", "action", "resource_type", "resource_id", "result", "ip", "user_agent", "request_id", "metadata", "details")}
        new_hash = link_hash(prev, event.seq, body_hash(row))
        sql("UPDATE audit_event SET prev_hash = %s, hash = %s WHERE id = %s", [prev, new_hash, event.pk])
        prev = new_hash
    sql("UPDATE audit_chain_head SET last_hash = %s WHERE chain = 't1'", [prev])
    message = verify_fails("--tenant", "t1")
    assert "broken" in message
    report = verify_chain("t1")
    assert any("signed checkpoint" in e for e in report.errors)


def test_a_deleted_event_is_named_by_verify():
    events = append(10)
    sql("DELETE FROM audit_event WHERE id = %s", [events[3].pk])
    message = verify_fails("--tenant", "t1")
    assert str(events[4].pk) in message
    assert any("missing (deleted)" in e for e in verify_chain("t1").errors)


def test_deleted_last_events_are_caught_by_the_head_and_the_checkpoint():
    events = append(10)
    services.checkpoint_all_chains()
    sql("DELETE FROM audit_event WHERE seq > 8 AND tenant_id = 't1'")
    sql("UPDATE audit_chain_head SET last_seq = 8, last_hash = %s WHERE chain = 't1'", [events[7].hash])
    report = verify_chain("t1")
    assert not report.ok
    assert any("chain ends at 8" in e for e in report.errors)
    verify_fails("--tenant", "t1")


def test_an_inserted_event_is_named_by_verify():
    events = append(5)
    sql("UPDATE audit_event SET seq = seq + 1 WHERE tenant_id = 't1' AND seq >= 3")
    forged = uuid.uuid4()
    sql(
        "INSERT INTO audit_event (id, tenant_id, seq, occurred_at, actor_type, actor_id, actor_label, action, resource_type,"
        " resource_id, result, ip, user_agent, request_id, metadata, prev_hash, hash)"
        " VALUES (%s, 't1', 3, now(), 'system', '', 'system', 'forged', '', '', 'success', '', '', '', '{}', %s, %s)",
        [forged, events[1].hash, "f" * 64],
    )
    message = verify_fails("--tenant", "t1")
    assert str(forged) in message


def test_reordered_events_are_named_by_verify():
    events = append(5)
    sql("UPDATE audit_event SET seq = -1 WHERE id = %s", [events[1].pk])
    sql("UPDATE audit_event SET seq = 2 WHERE id = %s", [events[2].pk])
    sql("UPDATE audit_event SET seq = 3 WHERE id = %s", [events[1].pk])
    message = verify_fails("--tenant", "t1")
    assert str(events[2].pk) in message


def test_a_forged_checkpoint_is_detected():
    append(3)
    services.checkpoint_all_chains()
    checkpoint = Checkpoint.objects.get(tenant_id="t1")
    Checkpoint.objects.filter(pk=checkpoint.pk).update(seq=2, head_hash=AuditEvent.objects.get(tenant_id="t1", seq=2).hash)
    report = verify_chain("t1")
    assert any("signature does not verify" in e for e in report.errors)
    verify_fails("--tenant", "t1")


def test_a_checkpoint_signed_by_another_key_is_detected(settings):
    import base64
    import os

    from apps.audit import signing

    append(2)
    settings.SWITCHYARD_AUDIT_SIGNING_KEY = base64.b64encode(os.urandom(32)).decode()
    signing.reset()
    try:
        services.checkpoint_all_chains()
    finally:
        settings.SWITCHYARD_AUDIT_SIGNING_KEY = None
        signing.reset()
    report = verify_chain("t1")
    assert any("signature does not verify" in e for e in report.errors)


def test_checkpoints_chain_and_are_only_made_when_the_head_moved():
    append(2)
    assert services.checkpoint_all_chains() == 1
    assert services.checkpoint_all_chains() == 0
    append(1)
    assert services.checkpoint_all_chains() == 1
    first, second = Checkpoint.objects.filter(tenant_id="t1").order_by("id")
    assert second.previous_id == first.pk and second.previous_digest == services.checkpoint_digest(first)
    assert "2/2 checkpoints valid" in run_verify("--tenant", "t1")


def test_a_deleted_checkpoint_is_detected():
    append(1)
    services.checkpoint_all_chains()
    append(1)
    services.checkpoint_all_chains()
    append(1)
    services.checkpoint_all_chains()
    middle = Checkpoint.objects.filter(tenant_id="t1").order_by("id")[1]
    Checkpoint.objects.filter(previous=middle).update(previous=None)
    Checkpoint.objects.filter(pk=middle.pk).delete()
    report = verify_chain("t1")
    assert any("does not name the checkpoint before it" in e for e in report.errors)


@pytest.mark.slow
def test_a_chain_of_100k_events_verifies():
    now = datetime.now(UTC) - timedelta(days=1)
    for start in range(0, 100_000, 10_000):
        record_events_bulk([
            {"action": "gateway.generate", "tenant_id": "big", "resource_type": "model", "resource_id": "gpt-x",
             "metadata": {"tokens": i}, "ip": "10.0.0.1"}
            for i in range(start, start + 10_000)
        ])
    services.checkpoint_all_chains()
    output = run_verify("--tenant", "big")
    assert "100000 of 100000 events and 1 of 1 checkpoints valid" in output
    assert now < AuditEvent.objects.filter(tenant_id="big").order_by("-seq").first().occurred_at


def test_bulk_events_may_carry_their_own_time_and_request_id_and_a_user_actor_by_id():
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    record_events_bulk([{"action": "gateway.generate", "tenant_id": "t1", "actor": Actor("user", "42", ""),
                         "occurred_at": when, "request_id": "req-abc"}])
    event = AuditEvent.objects.get(tenant_id="t1")
    assert (event.occurred_at, event.request_id, event.user_id) == (when, "req-abc", 42)
    assert verify_chain("t1").ok


def test_the_signing_key_command_prints_the_public_key_never_the_seed():
    from apps.audit import signing

    out = io.StringIO()
    call_command("audit_signing_key", stdout=out)
    assert signing.public_key_b64() in out.getvalue() and "BEGIN PUBLIC KEY" in out.getvalue()
    assert (signing.settings.SWITCHYARD_AUDIT_SIGNING_KEY or "no-seed") not in out.getvalue()


def test_production_refuses_to_start_without_a_signing_key(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_AUDIT_SIGNING_KEY")}
    env.update(SWITCHYARD_ENV="production", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 20 + "abcdefghijklmnopqrstuvwxyz0123456789",
               SWITCHYARD_KEK="a" * 44, DJANGO_ALLOWED_HOSTS="example.test")
    result = subprocess.run([sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='console.settings'; django.setup()"],
                            env=env, capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert result.returncode != 0
    assert "SWITCHYARD_AUDIT_SIGNING_KEY" in result.stderr


def test_odd_input_is_stored_and_still_verifies():
    event = record_event(action="odd", tenant_id="t1", user_agent="agent\x00/1", ip="not-an-ip", resource_id=12345,
                         metadata={"nul": "a\x00b", "nan": float("nan"), "nested": {"list": [1, 2.5, "ü"]}, "big": 2**70})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.user_agent, stored.ip, stored.resource_id) == ("agent/1", "", "12345")
    assert stored.metadata["nul"] == "ab" and stored.metadata["nan"] == "nan"
    assert verify_chain("t1").ok
