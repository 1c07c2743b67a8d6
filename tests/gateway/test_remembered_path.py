"""The one-round-trip admission: a process decides on the key and tenant snapshots it last read
and admits together with a read of both cache entries; a changed entry undoes the admission and
sends the request down the full path."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from apps.gateway.quotas import QuotaLimits
from tests.gateway.test_quotas import new_tenant, run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clean(redis_client):
    from apps.gateway import quotas

    quotas.reset_backend_state()
    yield
    quotas.reset_backend_state()


async def _admit(tenant_id, *, key_id=None, verify=None, budget=None):
    from apps.gateway import quotas

    return await quotas.admit(
        tenant_id=tenant_id, tenant_limits=QuotaLimits(100, 1000, 100_000, 5), key_id=key_id,
        key_limits=QuotaLimits(50, 500, 50_000, 3) if key_id else None, estimated_tokens=40,
        request_id=uuid.uuid4().hex, verify=verify, budget_scopes=[("tenant", tenant_id)] if budget else (),
        estimated_cost_units=700 if budget else 0,
    )


def _counts(tenant_id, key_id=None):
    from apps.gateway import quotas

    return quotas.usage_sync(tenant_id=tenant_id, key_id=key_id)


def test_a_current_snapshot_admits_and_a_changed_one_undoes_everything_it_took(redis_client):
    from apps.core.redis import get_redis, key
    from apps.gateway import quotas

    tenant_id, key_id = new_tenant(), "k-" + uuid.uuid4().hex[:8]
    entry_a, entry_b = key("test", "snap", uuid.uuid4().hex), key("test", "snap", uuid.uuid4().hex)
    get_redis().set(entry_a, b"key-v1")
    get_redis().set(entry_b, b"tenant-v1")
    # A budget hard limit, so the undo has a budget counter to give back too.
    get_redis().hset(quotas.budget_limit_key(tenant_id, "tenant", tenant_id), mapping={"limit": 10**9, "period": "month"})

    admitted = run(_admit(tenant_id, key_id=key_id, verify=((entry_a, entry_b), (b"key-v1", b"tenant-v1")), budget=True))
    assert admitted.allowed
    before = (_counts(tenant_id), _counts(tenant_id, key_id))
    assert before[0] == {"requests_per_minute": 1, "requests_per_day": 1, "tokens_per_month": 40, "max_concurrent": 1}
    spend_key = quotas.budget_spend_key(tenant_id, "tenant", tenant_id, "month")
    assert int(get_redis().get(spend_key)) == 700

    get_redis().set(entry_b, b"tenant-v2")  # the tenant was edited meanwhile
    with pytest.raises(quotas.StaleSnapshot):
        run(_admit(tenant_id, key_id=key_id, verify=((entry_a, entry_b), (b"key-v1", b"tenant-v1")), budget=True))
    assert (_counts(tenant_id), _counts(tenant_id, key_id)) == before
    assert int(get_redis().get(spend_key)) == 700

    get_redis().set(entry_a, b"-")  # revoked: the tombstone
    with pytest.raises(quotas.StaleSnapshot):
        run(_admit(tenant_id, key_id=key_id, verify=((entry_a, entry_b), (b"key-v1", b"tenant-v2"))))
    assert (_counts(tenant_id), _counts(tenant_id, key_id)) == before


def test_with_redis_unreachable_a_remembered_snapshot_is_never_trusted(settings, redis_client):
    from apps.core.redis import reset_clients
    from apps.gateway import quotas

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    reset_clients()
    try:
        with pytest.raises(quotas.StaleSnapshot):
            run(_admit(new_tenant(), verify=(("a", "b"), (b"1", b"2"))))
        with pytest.raises(quotas.StaleSnapshot):  # the breaker is open now: still never trusted
            run(_admit(new_tenant(), verify=(("a", "b"), (b"1", b"2"))))
    finally:
        reset_clients()


def test_concurrent_callers_share_pipelines_and_each_gets_its_own_replies(redis_client):
    from apps.core.redis import batch_for, get_async_redis, key

    names = [key("test", "batch", uuid.uuid4().hex) for _ in range(200)]

    async def main():
        batch = batch_for(get_async_redis())
        flushes = 0
        original = batch._flush

        async def counting():
            nonlocal flushes
            flushes += 1
            await original()

        batch._flush = counting
        replies = await asyncio.gather(*(batch.run([("SET", n, i), ("GET", n), ("INCR", n)]) for i, n in enumerate(names)))
        grouped = flushes
        bad = await batch.run([("INCR", names[0] + ":text"), ("HGET", names[1], "x")])
        return grouped, replies, bad

    from apps.core.redis import get_redis

    get_redis().set(names[0] + ":text", "not a number")
    flushes, replies, bad = run(main())
    assert flushes == 1  # 200 callers in one loop iteration: one pipeline
    assert [r[1:] for r in replies] == [[str(i).encode(), i + 1] for i in range(200)]
    assert isinstance(bad[0], Exception) and isinstance(bad[1], Exception)  # refusals come back, not raised


# --- against a live gateway ------------------------------------------------------------------

def post(gateway, key, **headers):
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=20,
                      json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20},
                      headers={"Authorization": f"Bearer {key}", **headers})


def test_changes_reach_a_process_that_remembers_the_key_at_once(live_gateway, world, personas):
    from apps.gateway import services
    from apps.tenants.models import Tenant

    for _ in range(3):  # the process now remembers the key and the tenant
        assert post(live_gateway, world.key).status_code == 200
    before = _counts("tenant-a")
    assert before["requests_per_day"] == 3

    # A limit changed in the console is in force on the next request.
    tenant = Tenant.objects.get(pk="tenant-a")
    tenant.requests_per_minute = 321
    tenant.save()
    response = post(live_gateway, world.key)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit-Requests"] == "321"

    # A suspended tenant is refused at once, and the undone admission took nothing.
    Tenant.objects.filter(pk="tenant-a").update(status="suspended")
    from apps.gateway import context

    context.forget_tenant("tenant-a")
    counts = _counts("tenant-a")
    response = post(live_gateway, world.key)
    assert response.status_code == 403 and response.json()["error"]["code"] == "tenant_suspended"
    assert _counts("tenant-a")["requests_per_day"] == counts["requests_per_day"]
    Tenant.objects.filter(pk="tenant-a").update(status="active")
    context.forget_tenant("tenant-a")
    assert post(live_gateway, world.key).status_code == 200

    # A revoked key is refused at once, and takes nothing.
    counts = _counts("tenant-a")
    services.revoke_api_key(actor=personas.a_admin, api_key=world.key_row)
    response = post(live_gateway, world.key)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert _counts("tenant-a")["requests_per_day"] == counts["requests_per_day"]
    assert _counts("tenant-a")["max_concurrent"] == 0
