"""Passive health by error rate: a deployment failing a large share of live calls cools down, even when its
failures never come three in a row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync

from apps.core.redis import get_async_redis, get_redis, reset_clients
from apps.gateway import router
from apps.gateway.providers import ChatRequest
from apps.gateway.providers.http import close_session
from apps.regions import error_rate, failover, health
from apps.regions.models import Deployment, Region
from bench.simulator import SimulatorProcess
from tests.conftest import make_tenant


@pytest.fixture(autouse=True)
def clean(settings):
    settings.SWITCHYARD_HEALTH_ERROR_RATE = 0.5
    settings.SWITCHYARD_HEALTH_ERROR_RATE_MIN_REQUESTS = 20
    settings.SWITCHYARD_HEALTH_ERROR_RATE_WINDOW_SECONDS = 30
    error_rate.reset()
    yield
    error_rate.reset()


def test_half_the_calls_failing_is_a_spike_once_enough_calls_were_seen():
    spikes = []
    for n in range(40):
        if n % 2:
            spikes.append(error_rate.note_failure("d1", now=100.0 + n * 0.1))
        else:
            error_rate.note_success("d1", now=100.0 + n * 0.1)
    assert spikes.index(True) == 9  # the 20th call, the 10th failure
    assert spikes[:10].count(True) == 1
    assert spikes[10:18] == [False] * 8  # the window restarts after a spike


def test_a_low_error_rate_or_too_few_calls_is_no_spike():
    for n in range(100):
        failed = n % 10 < 3  # 30 %
        assert not (error_rate.note_failure("d2", now=50.0 + n * 0.1) if failed
                    else error_rate.note_success("d2", now=50.0 + n * 0.1))
    assert not any(error_rate.note_failure("d3", now=10.0 + n) for n in range(19))


def test_calls_older_than_the_window_no_longer_count():
    for n in range(15):
        error_rate.note_failure("d4", now=0.0 + n * 0.1)
    # 15 failures long ago, then a few now: fewer than 20 calls inside the window.
    assert not any(error_rate.note_failure("d4", now=100.0 + n * 0.1) for n in range(6))


@pytest.fixture(scope="module")
def flaky_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="flaky-sim", output_tokens=4) as process:
        yield process


@pytest.fixture(scope="module")
def steady_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="steady-sim", output_tokens=4) as process:
        yield process


def test_the_router_cools_down_a_flaky_deployment_on_its_error_rate(db, settings, flaky_sim, steady_sim):
    settings.ROUTER_VERSION_CHECK_SECONDS = 0
    settings.REGIONS_HEALTH_CACHE_SECONDS = 0
    settings.REGIONS_HEALTH_FAILURE_THRESHOLD = 1000  # consecutive failures alone would never trip
    flaky_sim.control(error_rate=0.6, error_status=503)
    steady_sim.reset()
    try:
        region = Region.objects.create(id="us-east", name="US East", group="us")
        flaky = Deployment.objects.create(name="flaky", model="sim-small", provider="simulator",
                                          base_url=flaky_sim.url, api_key="sk", region=region, priority=1)
        Deployment.objects.create(name="steady", model="sim-small", provider="simulator", base_url=steady_sim.url,
                                  api_key="sk", region=region, priority=2)
        tenant = make_tenant("flaky-co")
        failover.forget_cached_orders()
        router.invalidate_cache()

        async def calls(n):
            served = []
            try:
                for i in range(n):
                    chat = ChatRequest(model="sim-small", messages=[{"role": "user", "content": "hi"}],
                                       request_id=f"r{i}", tenant_id=tenant.id)
                    _, snapshot, _ = await router.complete_with_fallback(tenant, chat)
                    served.append(snapshot.name)
            finally:
                await close_session()
                await get_async_redis().aclose()
                reset_clients()
            return served

        served = async_to_sync(calls)(80)
        assert health.is_cooling_down(flaky.pk)
        assert get_redis().get(health._cool_key(flaky.pk)) == b"error-rate"
        # Once cooled down, the rest went straight to the steady deployment.
        assert served[-5:] == ["steady"] * 5
        assert len(flaky_sim.requests()) < 80
    finally:
        flaky_sim.reset()
        router.invalidate_cache()
