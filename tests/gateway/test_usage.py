"""Usage records: written once however often a batch is retried, partitioned by month, priced
at the request's moment; stored content encrypted and purged by retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from apps.gateway import partitions, services, usage
from apps.gateway.models import StoredContent, UsageRecord
from tests.gateway.conftest import truncate_usage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def clean_usage(transactional_db, redis_client):
    truncate_usage()
    yield
    truncate_usage()


def record(request_id: str, created_at: datetime, **fields) -> dict:
    return {
        "request_id": request_id, "created_at": created_at.isoformat(), "tenant_id": "tenant-a", "api_key_id": None,
        "user_id": None, "department_id": None, "project_id": None, "model": "sim-small", "deployment_id": None,
        "region_id": "us-east", "endpoint": "generate", "stream": False, "status": "success", "status_code": 200,
        "error_code": "", "prompt_tokens": 3, "completion_tokens": 5, "cost": "0.00100000", "currency": "USD",
        "unpriced": False, "latency_ms": 12.5, "ttft_ms": 12.5, "attempts": 1, "tags": {}, **fields,
    }


def test_a_retried_write_never_counts_twice_nor_audits_twice(personas):
    from apps.audit.models import AuditEvent

    now = datetime.now(UTC)
    batch = [record("req-1", now), record("req-2", now)]
    assert usage.write_records(batch) == 2
    assert usage.write_records(batch) == 0
    assert usage.write_records([*batch, record("req-1", now)]) == 0
    assert UsageRecord.objects.count() == 2
    assert AuditEvent.objects.filter(action="gateway.generate").count() == 2


def test_a_queued_batch_read_twice_by_a_crashed_drainer_is_stored_once(personas, redis_client):
    now = datetime.now(UTC)
    for index in range(5):
        redis_client.rpush(usage.queue_key(), usage.encode(record(f"q-{index}", now)))
    # A drainer that wrote the batch but died before trimming the queue: the next one rereads it.
    usage.write_records([record(f"q-{index}", now) for index in range(3)])
    assert usage.drain_all() == 5
    assert usage.queue_length() == 0
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == [f"q-{i}" for i in range(5)]


def test_records_land_in_their_month_partition_which_is_created_on_demand(personas):
    far = datetime(2031, 7, 15, 12, 0, tzinfo=UTC)
    usage.write_records([record("future", far)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM gateway_usagerecord WHERE request_id = 'future'")
        assert cursor.fetchone()[0] == "gateway_usagerecord_y2031m07"


def test_retention_drops_whole_old_partitions(personas, settings):
    settings.SWITCHYARD_USAGE_RETENTION_MONTHS = 2
    now = datetime.now(UTC)
    old = partitions.add_months(partitions.month_start(now), -4) + timedelta(days=3)
    usage.write_records([record("old", old), record("new", now)])
    result = services.maintain_usage_partitions(now=now)
    assert partitions.partition_name(partitions.month_start(old)) in result["dropped"]
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["new"]
    names = [name for name, _ in partitions.existing_partitions()]
    assert partitions.partition_name(partitions.add_months(partitions.month_start(now), 2)) in names


def test_cost_uses_the_price_in_force_at_the_request_moment(personas):
    from apps.gateway import pricing

    start = datetime(2026, 1, 1, tzinfo=UTC)
    services.set_model_price(actor=personas.platform_admin, model="m", input_per_1k=Decimal("1"),
                             output_per_1k=Decimal("2"), effective_from=start)
    services.set_model_price(actor=personas.platform_admin, model="m", input_per_1k=Decimal("10"),
                             output_per_1k=Decimal("20"), effective_from=start + timedelta(days=30))
    book = pricing.PriceBook.load()
    assert pricing.cost_of(book.price_at("m", start + timedelta(days=1)), 1000, 500) == Decimal("2.00000000")
    assert pricing.cost_of(book.price_at("m", start + timedelta(days=31)), 1000, 500) == Decimal("20.00000000")
    assert book.price_at("m", start - timedelta(days=1)) is None
    assert book.price_at("unknown", start) is None


def test_stored_content_is_encrypted_at_rest_and_purged_after_retention(personas):
    from apps.gateway.content import store_content

    old = datetime.now(UTC) - timedelta(days=100)
    row = store_content(tenant_id="tenant-a", request_id="c-1", created_at=old, prompt="secret prompt",
                        response="secret answer", encrypt=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT prompt, response FROM gateway_storedcontent WHERE id = %s", [row.pk])
        raw_prompt, raw_response = cursor.fetchone()
    assert "secret" not in raw_prompt and "secret" not in raw_response
    assert StoredContent.objects.get(pk=row.pk).prompt_text == "secret prompt"
    store_content(tenant_id="tenant-a", request_id="c-2", created_at=datetime.now(UTC), prompt="p", response="r",
                  encrypt=True)
    assert services.purge_stored_content() == {"tenant-a": 1}
    assert list(StoredContent.objects.values_list("request_id", flat=True)) == ["c-2"]


def test_quota_refusals_get_a_usage_record_but_no_audit_event_each(personas):
    from apps.audit.models import AuditEvent

    now = datetime.now(UTC)
    refused = [record(f"r-{i}", now, status="rate_limited", status_code=429, prompt_tokens=0, completion_tokens=0)
               for i in range(20)]
    assert usage.write_records(refused) == 20
    assert UsageRecord.objects.filter(status="rate_limited").count() == 20
    assert not AuditEvent.objects.filter(action="gateway.generate").exists()
