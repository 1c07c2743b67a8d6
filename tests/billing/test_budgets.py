"""Budgets: hard limits pushed to the gateway's admission and held under concurrency (real Redis,
real processes, and real HTTP requests through the gateway to the upstream simulator), and the
50/80/100 % alerts sent once per budget, threshold and period."""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from apps.billing import services
from apps.billing.models import BudgetAlert
from apps.gateway import quotas
from tests.gateway.conftest import wait_drained

from .budget_worker import spend_worker
from .conftest import add_usage, price

CENT_UNITS = quotas.to_budget_units(Decimal("0.01"))


@pytest.fixture(autouse=True)
def _clean(redis_client):
    quotas.reset_backend_state()
    yield


def admit(tenant_id, scopes, cost_units, i):
    return quotas.admit(tenant_id=tenant_id, tenant_limits=quotas.QuotaLimits(), estimated_tokens=1,
                        request_id=f"r{i}", budget_scopes=scopes, estimated_cost_units=cost_units)


def run(coro):
    """Run a coroutine on a fresh loop in its own thread (a browser test elsewhere in this process
    may have left an event loop running in this one), then forget the loop-bound Redis clients."""
    from concurrent.futures import ThreadPoolExecutor

    from apps.core.redis import reset_clients

    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro).result()
    finally:
        reset_clients()


@pytest.mark.django_db
def test_a_hard_limit_budget_is_pushed_to_redis_with_the_recorded_spend_as_its_floor(personas):
    price("m-large", "0.010000", "0.030000", datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime.now(UTC)
    add_usage("tenant-a", created_at=now, model="m-large")  # 0.025
    budget = services.save_budget(actor=personas.a_admin, tenant=personas.tenant_a, scope="tenant",
                                  amount=Decimal("1.00"), hard_limit=True)
    services.push_budget(budget_id=budget.pk)
    from apps.core.redis import get_redis

    client = get_redis()
    assert client.hget(quotas.budget_limit_key("tenant-a", "tenant", "tenant-a"), "limit") == b"100000000"
    spend_key = quotas.budget_spend_key("tenant-a", "tenant", "tenant-a", "month")
    assert int(client.get(spend_key)) == 2_500_000
    client.set(spend_key, 9_000_000)  # in-flight reservations above the recorded spend are kept
    services.push_budget(budget_id=budget.pk)
    assert int(client.get(spend_key)) == 9_000_000
    services.save_budget(actor=personas.a_admin, tenant=personas.tenant_a, scope="tenant", amount=Decimal("1.00"),
                         hard_limit=False, budget=budget)
    services.push_budget(budget_id=budget.pk)
    assert not client.exists(quotas.budget_limit_key("tenant-a", "tenant", "tenant-a"))


def test_a_department_budget_refuses_only_that_departments_requests_and_reconciles_to_the_real_cost(redis_client):
    tenant = "t-budget-dept"
    redis_client.hset(quotas.budget_limit_key(tenant, "department", "7"), mapping={"limit": 10 * CENT_UNITS,
                                                                                   "period": "month"})

    async def scenario():
        first = await admit(tenant, [("tenant", tenant), ("department", "7")], 6 * CENT_UNITS, 1)
        second = await admit(tenant, [("tenant", tenant), ("department", "7")], 6 * CENT_UNITS, 2)
        other = await admit(tenant, [("tenant", tenant), ("department", "8")], 6 * CENT_UNITS, 3)
        # The first request really cost 1 cent: 5 of its 6 reserved cents come back.
        await quotas.settle(first, 10, actual_cost_units=CENT_UNITS)
        third = await admit(tenant, [("tenant", tenant), ("department", "7")], 6 * CENT_UNITS, 4)
        return first, second, other, third

    first, second, other, third = run(scenario())
    assert first.allowed and other.allowed and third.allowed
    assert not second.allowed and second.reason == "budget" and second.scope == "department"
    assert second.limit == 10 * CENT_UNITS and second.retry_after >= 1
    spent = int(redis_client.get(quotas.budget_spend_key(tenant, "department", "7", "month")))
    assert spent == 7 * CENT_UNITS


def test_a_budget_of_zero_blocks_even_an_unpriced_request(redis_client):
    tenant = "t-budget-zero"
    redis_client.hset(quotas.budget_limit_key(tenant, "tenant", tenant), mapping={"limit": 0, "period": "day"})
    admission = run(admit(tenant, [("tenant", tenant)], 0, 1))
    assert not admission.allowed and admission.reason == "budget"


def test_a_budget_hard_limit_holds_under_concurrent_admissions_from_four_processes(redis_client):
    from django.conf import settings

    tenant = "t-budget-procs"
    redis_client.hset(quotas.budget_limit_key(tenant, "project", "3"), mapping={"limit": 250 * CENT_UNITS,
                                                                                "period": "month"})
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=spend_worker, args=(settings.REDIS_KEY_PREFIX, tenant, 150, ready, go, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    go.set()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert sum(counts) == 250, counts  # 600 attempts of 1 cent against a 2.50 budget
    assert sum(1 for c in counts if c) >= 2, counts
    assert int(redis_client.get(quotas.budget_spend_key(tenant, "project", "3", "month"))) == 250 * CENT_UNITS


@pytest.mark.django_db(transaction=True)
def test_a_budget_hard_limit_holds_under_concurrent_requests_through_the_gateway(world, live_gateway):
    from apps.gateway.models import UsageRecord

    # sim-small costs 0.5 / 1.5 per 1k tokens: max_tokens=50 reserves about 0.076 per request.
    budget = services.save_budget(actor=None, tenant=world.tenant, scope="tenant",
                                  amount=Decimal("0.50"), hard_limit=True)
    services.push_budget(budget_id=budget.pk)

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(
                client.post(live_gateway.url + "/api/v1/generate", headers={"Authorization": f"Bearer {world.key}"},
                            json={"prompt": f"hello {i}", "model": "sim-small", "max_tokens": 50})
                for i in range(40)))

    responses = run(burst())
    codes = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    assert codes.count(200) >= 1 and refused, codes
    body = refused[0].json()["error"]
    assert body["code"] == "budget_exceeded" and "Budget hard limit reached" in body["message"]
    wait_drained()
    spent = sum(r.cost for r in UsageRecord.objects.filter(tenant_id=world.tenant.pk, status="success"))
    assert Decimal("0") < spent <= Decimal("0.50"), spent
    assert UsageRecord.objects.filter(tenant_id=world.tenant.pk, status="success").count() == codes.count(200)


@pytest.mark.django_db
def test_alerts_at_50_80_and_100_percent_are_sent_once_per_budget_and_period(personas, monkeypatch):
    price("m-large", "0.010000", "0.030000", datetime(2026, 1, 1, tzinfo=UTC))
    sent = []
    import apps.core.notifications as notifications

    monkeypatch.setattr(notifications, "notify", lambda **kw: sent.append(kw) or 1)
    budget = services.save_budget(actor=personas.a_admin, tenant=personas.tenant_a, scope="tenant",
                                  amount=Decimal("0.10"))
    now = datetime.now(UTC)
    for _ in range(2):
        add_usage("tenant-a", created_at=now, model="m-large")  # 0.05: 50 %
    services.check_budgets(now=now)
    assert [kw["title"].split(":")[0] for kw in sent] == ["Budget 50% reached"]
    add_usage("tenant-a", created_at=now, model="m-large", prompt=4000)  # +0.055: 105 %
    services.check_budgets(now=now)
    services.check_budgets(now=now)
    assert [kw["title"].split(":")[0] for kw in sent] == ["Budget 50% reached", "Budget 80% reached",
                                                          "Budget 100% reached"]
    assert sent[-1]["severity"] == "critical" and sent[-1]["event"] == "budget.threshold"
    assert BudgetAlert.objects.filter(budget=budget).count() == 3


@pytest.mark.django_db
def test_the_periodic_tasks_run_as_celery_would_call_them(personas):
    from apps.billing import tasks

    services.save_budget(actor=personas.a_admin, tenant=personas.tenant_a, scope="tenant", amount=Decimal("5"),
                         hard_limit=True)
    assert tasks.check_budgets() == {"budgets": 1, "alerts": 0}
    assert tasks.rollup_usage()["until"].endswith("T00:00:00+00:00")
    assert tasks.rollup_usage()["rows"] == 0  # a rerun only replaces the same days
