"""Quota admission against real Redis: atomicity under concurrency, windows, leases, outages."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time
import uuid

import pytest

from apps.gateway.quotas import QuotaLimits


def run(coro):
    """Run one coroutine on a fresh loop, then forget the loop-bound Redis clients."""
    from apps.core.redis import reset_clients

    try:
        return asyncio.run(coro)
    finally:
        reset_clients()


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def admit_many(tenant_id, limits, n, *, key_id=None, key_limits=None, tokens=10, lease_seconds=300,
                     concurrent=False):
    """n admissions, one after another (or all at once when concurrent)."""
    from apps.gateway import quotas

    async def one(i):
        return await quotas.admit(
            tenant_id=tenant_id, tenant_limits=limits, key_id=key_id, key_limits=key_limits,
            estimated_tokens=tokens, request_id=f"r{i}", lease_seconds=lease_seconds,
        )

    if concurrent:
        # Bounded like a server's connection pool; unbounded, 400 simultaneous connects on a loaded
        # 2-core machine time out, which tests the machine rather than the script.
        sem = asyncio.Semaphore(100)

        async def bounded(i):
            async with sem:
                return await one(i)

        return await asyncio.gather(*(bounded(i) for i in range(n)))
    return [await one(i) for i in range(n)]


@pytest.fixture(autouse=True)
def _clean(redis_client):
    from apps.gateway import quotas

    quotas.reset_backend_state()
    yield
    quotas.reset_backend_state()


def test_an_admission_within_limits_is_allowed_and_reports_rate_limit_headers():
    from apps.gateway import quotas

    tenant = new_tenant()
    limits = QuotaLimits(requests_per_minute=10, requests_per_day=100, tokens_per_month=1000, max_concurrent=5)

    async def scenario():
        first = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=100, request_id="a")
        second = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=100, request_id="b")
        return first, second, await quotas.usage(tenant_id=tenant)

    first, second, used = run(scenario())
    assert first.allowed and second.allowed and not first.degraded
    assert first.lease_id != second.lease_id
    assert second.headers["X-RateLimit-Limit-Requests"] == "10"
    assert second.headers["X-RateLimit-Remaining-Requests"] == "8"
    assert second.headers["X-RateLimit-Limit-Tokens"] == "1000"
    assert second.headers["X-RateLimit-Remaining-Tokens"] == "800"
    assert second.headers["X-RateLimit-Reset-Requests"].endswith("s")
    assert int(second.headers["X-RateLimit-Reset-Requests"][:-1]) in range(1, 61)
    assert used == {"requests_per_minute": 2, "requests_per_day": 2, "tokens_per_month": 200, "max_concurrent": 2}


def test_many_concurrent_tasks_never_get_more_than_the_per_minute_limit():
    tenant = new_tenant()
    results = run(admit_many(tenant, QuotaLimits(requests_per_minute=100), 400, concurrent=True))
    # (at most 100 in flight at once: see admit_many)
    allowed = [r for r in results if r.allowed]
    refused = [r for r in results if not r.allowed]
    assert len(allowed) == 100
    assert {r.reason for r in refused} == {"requests_per_minute"}
    assert all(1 <= r.retry_after <= 60 for r in refused)
    assert all(r.headers["X-RateLimit-Remaining-Requests"] == "0" for r in refused)


def _hammer(prefix: str, tenant_id: str, attempts: int, ready, go, out) -> None:
    """A separate OS process admitting as fast as it can (spawned: nothing shared with the parent)."""
    os.environ["SWITCHYARD_REDIS_PREFIX"] = prefix
    import django

    django.setup()
    from apps.gateway import quotas

    async def hammer():
        sem = asyncio.Semaphore(25)

        async def one(i):
            async with sem:
                return await quotas.admit(
                    tenant_id=tenant_id, tenant_limits=QuotaLimits(requests_per_minute=600, max_concurrent=10_000),
                    estimated_tokens=1, request_id=f"{os.getpid()}-{i}",
                )

        await quotas.usage(tenant_id="warm-up")  # connect before the start signal
        ready.put(os.getpid())
        while not go.is_set():
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*(one(i) for i in range(attempts)))
        return sum(1 for r in results if r.allowed), [r.admitted_at_ms for r in results if r.allowed]

    out.put(asyncio.run(hammer()))


def test_four_processes_together_never_over_admit_a_600_per_minute_limit():
    from django.conf import settings

    tenant = new_tenant()
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_hammer, args=(settings.REDIS_KEY_PREFIX, tenant, 400, ready, go, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    go.set()  # all four start together
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    counts = [count for count, _ in results]
    times = sorted(t for _, ts in results for t in ts)
    assert sum(counts) == 600, counts
    assert sum(1 for c in counts if c > 0) >= 2, f"the processes really competed: {counts}"
    assert times[-1] - times[0] < 60_000


def test_the_minute_window_slides_so_no_interval_of_its_length_exceeds_the_limit(monkeypatch):
    from apps.gateway import quotas

    # A 1-second window stands in for the minute so the test can watch it slide.
    monkeypatch.setattr(quotas, "RPM_WINDOW_MS", 1000)
    tenant = new_tenant()
    limits = QuotaLimits(requests_per_minute=5)

    async def scenario():
        admitted, refusals = [], []
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            a = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="x")
            (admitted if a.allowed else refusals).append(a)
            await asyncio.sleep(0.01)
        return admitted, refusals

    admitted, refusals = run(scenario())
    stamps = sorted(a.admitted_at_ms for a in admitted)
    for i, start in enumerate(stamps):
        in_window = [t for t in stamps[i:] if t < start + 1000]
        assert len(in_window) <= 5
    assert 10 <= len(stamps) <= 20  # the window kept sliding: up to 5 per second for 3.2 s
    assert refusals and all(r.retry_after == 1 for r in refusals)


def test_a_refused_request_consumes_no_quota():
    from apps.gateway import quotas

    tenant = new_tenant()
    limits = QuotaLimits(requests_per_minute=100, requests_per_day=100, tokens_per_month=1000, max_concurrent=10)

    async def scenario():
        ok = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=900, request_id="a")
        too_big = [
            await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=500, request_id=f"b{i}")
            for i in range(5)
        ]
        return ok, too_big, await quotas.usage(tenant_id=tenant)

    ok, too_big, used = run(scenario())
    assert ok.allowed
    assert all(not r.allowed and r.reason == "tokens_per_month" for r in too_big)
    assert used == {"requests_per_minute": 1, "requests_per_day": 1, "tokens_per_month": 900, "max_concurrent": 1}


def test_tokens_per_month_refusal_waits_until_the_next_utc_month():
    from datetime import UTC, datetime

    from apps.gateway import quotas

    tenant = new_tenant()

    async def scenario():
        return await quotas.admit(tenant_id=tenant, tenant_limits=QuotaLimits(tokens_per_month=50),
                                  estimated_tokens=51, request_id="a")

    started = datetime.now(UTC)
    refused = run(scenario())
    ended = datetime.now(UTC)
    next_month = datetime(started.year + (started.month == 12), started.month % 12 + 1, 1, tzinfo=UTC)
    assert refused.reason == "tokens_per_month" and refused.scope == "tenant" and refused.limit == 50
    assert (next_month - ended).total_seconds() - 1 <= refused.retry_after <= (next_month - started).total_seconds() + 1
    assert refused.headers["X-RateLimit-Limit-Tokens"] == "50"


def test_requests_per_day_refusal_waits_until_utc_midnight():

    tenant = new_tenant()
    started = time.time()
    results = run(admit_many(tenant, QuotaLimits(requests_per_day=3), 5))
    ended = time.time()
    refused = [r for r in results if not r.allowed]
    assert len(refused) == 2 and {r.reason for r in refused} == {"requests_per_day"}
    midnight = (int(started) // 86400 + 1) * 86400
    assert midnight - ended - 1 <= refused[0].retry_after <= midnight - started + 1
    assert refused[0].headers["X-RateLimit-Limit-Requests"] == "3"


def test_reconcile_moves_the_month_counter_to_the_real_token_count_once():
    from apps.gateway import quotas

    tenant = new_tenant()
    limits = QuotaLimits(tokens_per_month=10_000)

    async def scenario():
        a = await quotas.admit(tenant_id=tenant, tenant_limits=limits, key_id="k1",
                               key_limits=QuotaLimits(tokens_per_month=5000), estimated_tokens=1000, request_id="a")
        await quotas.reconcile(a, 240)
        await quotas.reconcile(a, 240)  # twice: still counted once
        b = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=500, request_id="b")
        await quotas.settle(b, 700)  # more than estimated: the counter grows by the difference
        return await quotas.usage(tenant_id=tenant), await quotas.usage(tenant_id=tenant, key_id="k1")

    tenant_used, key_used = run(scenario())
    assert tenant_used["tokens_per_month"] == 240 + 700
    assert key_used["tokens_per_month"] == 240


def test_release_frees_the_concurrency_slot_and_is_idempotent():
    from apps.gateway import quotas

    tenant = new_tenant()
    limits = QuotaLimits(max_concurrent=2)

    async def scenario():
        results = await admit_many(tenant, limits, 3, concurrent=True)
        (a, b), (c,) = [r for r in results if r.allowed], [r for r in results if not r.allowed]
        assert c.reason == "max_concurrent" and c.retry_after == 1
        await quotas.release(a)
        await quotas.release(a)
        await quotas.release(c)  # a refused admission holds nothing: a no-op
        d = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="d")
        e = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="e")
        await quotas.settle(b, None)
        f = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="f")
        return d, e, f

    d, e, f = run(scenario())
    assert d.allowed and not e.allowed and f.allowed


def _take_slot_and_die(prefix: str, tenant_id: str) -> None:
    os.environ["SWITCHYARD_REDIS_PREFIX"] = prefix
    import django

    django.setup()
    from apps.gateway import quotas

    async def go():
        return await quotas.admit(tenant_id=tenant_id, tenant_limits=QuotaLimits(max_concurrent=1),
                                  estimated_tokens=0, request_id="dying", lease_seconds=2)

    admission = asyncio.run(go())
    os._exit(0 if admission.allowed else 3)  # dies holding the slot: no release, no cleanup


def test_a_slot_held_by_a_process_that_died_frees_itself_when_its_lease_expires():
    from django.conf import settings

    from apps.gateway import quotas

    tenant = new_tenant()
    proc = multiprocessing.get_context("spawn").Process(
        target=_take_slot_and_die, args=(settings.REDIS_KEY_PREFIX, tenant)
    )
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    limits = QuotaLimits(max_concurrent=1)

    async def scenario():
        blocked = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="a")
        await asyncio.sleep(2.1)
        freed = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="b")
        return blocked, freed

    blocked, freed = run(scenario())
    assert not blocked.allowed and blocked.reason == "max_concurrent"
    assert freed.allowed


def test_key_limits_apply_together_with_the_tenant_limits():
    from apps.gateway import quotas

    tenant = new_tenant()
    tenant_limits = QuotaLimits(requests_per_minute=5)
    key_limits = QuotaLimits(requests_per_minute=2)

    async def scenario():
        by_key = await admit_many(tenant, tenant_limits, 4, key_id="key-1", key_limits=key_limits)
        other_key = await admit_many(tenant, tenant_limits, 4, key_id="key-2", key_limits=key_limits)
        return by_key, other_key, await quotas.usage(tenant_id=tenant), await quotas.usage(tenant_id=tenant, key_id="key-2")

    by_key, other_key, tenant_used, key2_used = run(scenario())
    assert [r.allowed for r in by_key] == [True, True, False, False]
    assert {(r.scope, r.reason) for r in by_key if not r.allowed} == {("key", "requests_per_minute")}
    # key-2 gets its 2; then the tenant's 5 is not yet reached, so the key limit refuses again.
    assert sum(r.allowed for r in other_key) == 2
    assert tenant_used["requests_per_minute"] == 4
    # the tightest limit is what the headers report
    assert by_key[1].headers["X-RateLimit-Limit-Requests"] == "2"
    assert key2_used["requests_per_minute"] == 2


def test_a_tenant_refusal_takes_nothing_from_the_keys_quota():
    from apps.gateway import quotas

    tenant = new_tenant()

    async def scenario():
        results = await admit_many(tenant, QuotaLimits(requests_per_minute=1), 3, key_id="k",
                                   key_limits=QuotaLimits(requests_per_minute=10))
        return results, await quotas.usage(tenant_id=tenant, key_id="k")

    results, key_used = run(scenario())
    assert [r.allowed for r in results] == [True, False, False]
    assert results[1].scope == "tenant"
    assert key_used["requests_per_minute"] == 1


def test_a_limit_of_zero_blocks_that_dimension():
    tenant = new_tenant()
    for limits, reason in [
        (QuotaLimits(requests_per_minute=0), "requests_per_minute"),
        (QuotaLimits(requests_per_day=0), "requests_per_day"),
        (QuotaLimits(tokens_per_month=0), "tokens_per_month"),
        (QuotaLimits(max_concurrent=0), "max_concurrent"),
    ]:
        (result,) = run(admit_many(tenant, limits, 1, tokens=0))
        assert not result.allowed and result.reason == reason and result.retry_after >= 1


def test_no_limits_at_all_admits_everything_without_headers():
    results = run(admit_many(new_tenant(), QuotaLimits(), 50))
    assert all(r.allowed for r in results)
    assert results[0].headers == {}


def test_a_tenant_hammering_its_limit_does_not_slow_another_tenant():
    from apps.gateway import quotas

    noisy, quiet = new_tenant(), new_tenant()
    limits = QuotaLimits(requests_per_minute=10)

    async def scenario():
        async def hammer():
            refused = 0
            for i in range(300):
                a = await quotas.admit(tenant_id=noisy, tenant_limits=limits, estimated_tokens=0, request_id=f"n{i}")
                refused += not a.allowed
            return refused

        async def polite():
            latencies, allowed = [], 0
            for i in range(10):
                started = time.perf_counter()
                a = await quotas.admit(tenant_id=quiet, tenant_limits=limits, estimated_tokens=0, request_id=f"q{i}")
                latencies.append(time.perf_counter() - started)
                allowed += a.allowed
                await asyncio.sleep(0.005)
            return allowed, latencies

        return await asyncio.gather(hammer(), polite())

    refused, (allowed, latencies) = run(scenario())
    assert refused == 290
    assert allowed == 10
    assert sorted(latencies)[len(latencies) // 2] < 0.02  # median; a loaded CI box may stall one call


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_down(settings):
    from apps.core.redis import reset_clients

    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    reset_clients()
    yield
    reset_clients()


def test_redis_unreachable_fails_closed_with_quota_backend_unavailable(redis_down):
    from apps.gateway import metrics, quotas

    def refused_count():
        return metrics.REGISTRY.get_sample_value(
            "switchyard_gateway_quota_backend_unavailable_total", {"outcome": "refused"}) or 0

    before = refused_count()

    async def scenario():
        return await quotas.admit(tenant_id=new_tenant(), tenant_limits=QuotaLimits(requests_per_minute=5),
                                  estimated_tokens=1, request_id="a")

    with pytest.raises(quotas.QuotaBackendUnavailable) as info:
        run(scenario())
    assert "Redis" in info.value.message
    assert quotas._backend_down(), "the breaker answers at once while Redis is known down"
    with pytest.raises(quotas.QuotaBackendUnavailable):
        run(scenario())
    assert refused_count() == before + 2


def test_redis_unreachable_in_degraded_mode_admits_within_this_processs_share(redis_down, settings):
    from apps.gateway import metrics, quotas

    def degraded_count():
        return metrics.REGISTRY.get_sample_value(
            "switchyard_gateway_quota_backend_unavailable_total", {"outcome": "degraded"}) or 0

    before = degraded_count()
    settings.SWITCHYARD_QUOTA_DEGRADED_DIVISOR = 2
    tenant = new_tenant()
    limits = QuotaLimits(requests_per_minute=100, max_concurrent=6)

    async def scenario():
        results = [
            await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=1, request_id=f"r{i}",
                               degraded_ok=True)
            for i in range(5)
        ]
        await quotas.release(results[0])
        await quotas.reconcile(results[1], 10)  # nothing to reconcile without Redis; must not raise
        after = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=1, request_id="z",
                                   degraded_ok=True)
        return results, after

    results, after = run(scenario())
    assert all(r.degraded for r in results)
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert results[3].reason == "max_concurrent" and results[3].limit == 3
    assert after.allowed and after.degraded
    assert degraded_count() == before + 6


def test_release_and_settle_after_redis_went_away_do_not_raise(settings):
    from apps.core.redis import reset_clients
    from apps.gateway import quotas

    tenant = new_tenant()
    (a, b) = run(admit_many(tenant, QuotaLimits(max_concurrent=5), 2))
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    reset_clients()
    try:
        run(quotas.release(a))
        quotas.reset_backend_state()
        run(quotas.settle(b, 5))
    finally:
        reset_clients()


def test_renewing_a_lease_keeps_the_slot_past_its_first_expiry_and_never_revives_a_released_one():
    from apps.gateway import quotas

    tenant = new_tenant()
    limits = QuotaLimits(max_concurrent=1)

    async def scenario():
        held = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="a",
                                  lease_seconds=1)
        await quotas.renew(held, lease_seconds=5)
        await asyncio.sleep(1.2)
        still_blocked = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="b")
        await quotas.release(held)
        await quotas.renew(held, lease_seconds=5)
        free = await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=0, request_id="c")
        return still_blocked, free

    still_blocked, free = run(scenario())
    assert not still_blocked.allowed and free.allowed


def test_a_refused_connection_opens_the_breaker_at_once_but_only_repeated_timeouts_do():
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from apps.gateway import quotas

    for _ in range(quotas.TIMEOUTS_TO_TRIP - 1):
        quotas._trip_breaker(RedisTimeoutError("Timeout reading from socket"))
    assert not quotas._backend_down(), "a busy moment must not fail every request for a second"
    quotas._trip_breaker(RedisTimeoutError("Timeout reading from socket"))
    assert quotas._backend_down()
    quotas.reset_backend_state()
    quotas._trip_breaker(RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."))
    assert quotas._backend_down()


def test_a_thousand_simultaneous_admissions_queue_for_connections_instead_of_failing():
    from apps.gateway import quotas

    tenant = new_tenant()
    limits = QuotaLimits(requests_per_minute=100_000, max_concurrent=100_000)

    async def scenario():
        async def one(i):
            return await quotas.admit(tenant_id=tenant, tenant_limits=limits, estimated_tokens=1,
                                      request_id=f"r{i}")

        results = await asyncio.gather(*(one(i) for i in range(1000)), return_exceptions=True)
        await asyncio.gather(*(quotas.settle(r, 1) for r in results if isinstance(r, quotas.Admission)))
        return results, await quotas.usage(tenant_id=tenant)

    results, used = run(scenario())
    errors = [r for r in results if not isinstance(r, quotas.Admission)]
    assert not errors, errors[:3]
    assert all(r.allowed for r in results)
    assert used["requests_per_minute"] == 1000 and used["max_concurrent"] == 0
    assert not quotas._backend_down()
