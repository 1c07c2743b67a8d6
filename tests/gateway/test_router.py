"""The router against two real simulator processes in two regions: selection, residency, fallback, health."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync

from apps.core.redis import get_async_redis, get_redis, key, reset_clients
from apps.gateway import router
from apps.gateway.providers import ChatRequest
from apps.gateway.providers.http import close_session
from apps.regions import health
from apps.regions.models import Deployment, Region
from bench.simulator import SimulatorProcess
from tests.conftest import make_tenant


@pytest.fixture(scope="module")
def us_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="us-east-sim", output_tokens=8) as process:
        yield process


@pytest.fixture(scope="module")
def eu_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="eu-west-sim", output_tokens=8) as process:
        yield process


@pytest.fixture(autouse=True)
def clean_state(us_sim, eu_sim, settings):
    # Keys of our own, so no other test process sweeping a shared prefix can touch them.
    prefix = f"sytest:router:{os.getpid()}:"
    settings.REDIS_KEY_PREFIX = prefix
    settings.ROUTER_VERSION_CHECK_SECONDS = 0
    settings.REGIONS_HEALTH_CACHE_SECONDS = 0
    settings.REGIONS_HEALTH_FAILURE_THRESHOLD = 3
    for sim in (us_sim, eu_sim):
        sim.reset()
        sim.clear_requests()
    router.invalidate_cache()
    yield
    router.invalidate_cache()
    client = get_redis()
    for name in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(name)


@pytest.fixture
def redis_client():
    return get_redis()


@pytest.fixture
def regions(db):
    return {
        "us": Region.objects.create(id="us-east", name="US East", group="us"),
        "eu": Region.objects.create(id="eu-west", name="EU West", group="eu"),
    }


def deploy(name, sim, region, *, tenant=None, priority=100, provider="simulator", model="sim-small", timeout=5,
           api_key="sk-upstream", **extra) -> Deployment:
    base_url = sim if isinstance(sim, str) else sim.url
    return Deployment.objects.create(
        name=name, model=model, provider=provider, upstream_model="sim-small", base_url=base_url, api_key=api_key,
        region=region, tenant=tenant, priority=priority, timeout_seconds=timeout, **extra,
    )


def request(tenant, **fields) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", "sim-small"), messages=[{"role": "user", "content": "Hello there"}],
                       request_id=fields.pop("request_id", "req-1"), tenant_id=tenant.id, **fields)


def call(fn, *args):
    """Run an async router function from a sync test; its DB reads run in this thread's transaction."""

    async def main():
        try:
            return await fn(*args)
        finally:
            await close_session()
            await get_async_redis().aclose()
            reset_clients()

    return async_to_sync(main)()


def stream_all(tenant, chat):
    async def consume():
        snapshot, deltas = await router.stream_with_fallback(tenant, chat)
        try:
            return snapshot, [d async for d in deltas], deltas.attempts
        finally:
            await deltas.aclose()

    return call(consume)


def tenants_seen(sim, tenant_id) -> list[dict]:
    return [r for r in sim.requests() if r["headers"].get("x-switchyard-tenant") == tenant_id]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- Selection ---------------------------------------------------------------------------------------

def test_a_shared_tenant_gets_the_shared_pool_in_priority_order(regions, us_sim, eu_sim):
    tenant = make_tenant("acme", isolation_mode="shared")
    second = deploy("eu-shared", eu_sim, regions["eu"], priority=20)
    first = deploy("us-shared", us_sim, regions["us"], priority=10)
    deploy("acme-dedicated", us_sim, regions["us"], tenant=tenant, priority=1)
    eligible = call(router.eligible_deployments, tenant, "sim-small")
    assert [s.name for s in eligible] == ["us-shared", "eu-shared"]
    assert eligible[0].id == str(first.pk) and eligible[1].id == str(second.pk)
    result, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "us-shared"
    assert snapshot.region_id == "us-east" and snapshot.region_group == "us"
    assert result.completion_tokens == 8
    assert [a.ok for a in attempts] == [True]
    assert len(tenants_seen(us_sim, "acme")) == 1


def test_strict_isolation_uses_only_the_tenants_dedicated_deployments(regions, us_sim):
    tenant = make_tenant("strict-co", isolation_mode="strict")
    other = make_tenant("other-co", isolation_mode="strict")
    deploy("shared", us_sim, regions["us"], priority=1)
    deploy("others-dedicated", us_sim, regions["us"], tenant=other, priority=1)
    assert call(router.eligible_deployments, tenant, "sim-small") == []
    with pytest.raises(router.NoDeploymentAvailable) as caught:
        call(router.complete_with_fallback, tenant, request(tenant))
    assert caught.value.status == 503
    assert "No deployment of model 'sim-small'" in caught.value.message
    assert tenants_seen(us_sim, "strict-co") == []
    deploy("strict-dedicated", us_sim, regions["us"], tenant=tenant, priority=50)
    router.invalidate_cache()
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["strict-dedicated"]


def test_hybrid_isolation_tries_dedicated_first_and_falls_back_to_the_shared_pool(regions, us_sim, eu_sim):
    tenant = make_tenant("hybrid-co", isolation_mode="hybrid")
    deploy("shared-us", us_sim, regions["us"], priority=1)
    deploy("hybrid-dedicated", eu_sim, regions["eu"], tenant=tenant, priority=90)
    eligible = call(router.eligible_deployments, tenant, "sim-small")
    assert [s.name for s in eligible] == ["hybrid-dedicated", "shared-us"]
    assert eligible[0].dedicated and not eligible[1].dedicated
    eu_sim.control(error_rate=1.0, error_status=503)
    result, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "shared-us"
    assert [(a.deployment_name, a.ok, a.error_kind) for a in attempts] == [
        ("hybrid-dedicated", False, "server_error"), ("shared-us", True, None)
    ]
    assert result.text


def test_available_models_follow_isolation_residency_and_the_allow_list(regions, us_sim, eu_sim):
    tenant = make_tenant("models-co", isolation_mode="shared", data_residency="eu")
    deploy("eu-small", eu_sim, regions["eu"], model="sim-small")
    deploy("eu-large", eu_sim, regions["eu"], model="sim-large")
    deploy("us-only", us_sim, regions["us"], model="gpt-4o-mini")
    deploy("dedicated-elsewhere", eu_sim, regions["eu"], model="claude-3-5-haiku",
           tenant=make_tenant("someone-else"))
    assert call(router.available_models, tenant) == ["sim-large", "sim-small"]
    tenant.allowed_models = ["sim-large"]
    assert call(router.available_models, tenant) == ["sim-large"]


def test_disabled_deployments_and_disabled_regions_take_no_traffic(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    deploy("off", us_sim, regions["us"], priority=1, enabled=False)
    deploy("in-closed-region", eu_sim, Region.objects.create(id="eu-north", name="EU North", group="eu", enabled=False))
    deploy("on", eu_sim, regions["eu"], priority=9)
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["on"]


def test_equal_priority_deployments_share_the_load(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    deploy("a", us_sim, regions["us"], priority=5)
    deploy("b", eu_sim, regions["eu"], priority=5)
    firsts = {call(router.eligible_deployments, tenant, "sim-small")[0].name for _ in range(4)}
    assert firsts == {"a", "b"}


# --- Residency -------------------------------------------------------------------------------------

def test_residency_is_never_crossed_even_when_every_allowed_deployment_fails(regions, us_sim, eu_sim):
    tenant = make_tenant("eu-bank", isolation_mode="shared", data_residency="eu")
    deploy("us-primary", us_sim, regions["us"], priority=1)
    deploy("eu-secondary", eu_sim, regions["eu"], priority=2)
    result, snapshot, _ = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.region_group == "eu"
    eu_sim.control(error_rate=1.0, error_status=500)
    for _ in range(3):
        with pytest.raises(router.NoDeploymentAvailable) as caught:
            call(router.complete_with_fallback, tenant, request(tenant))
        assert caught.value.status in (502, 503)
    with pytest.raises(router.NoDeploymentAvailable):
        stream_all(tenant, request(tenant, stream=True))
    assert tenants_seen(us_sim, "eu-bank") == []
    assert len(tenants_seen(eu_sim, "eu-bank")) >= 4


def test_a_us_tenant_falls_back_only_within_the_us(regions, us_sim, eu_sim):
    tenant = make_tenant("us-health", isolation_mode="hybrid", data_residency="us")
    us_east_2 = Region.objects.create(id="us-west", name="US West", group="us")
    deploy("eu-cheap", eu_sim, regions["eu"], priority=1)
    deploy("us-dead", closed_port_url(), regions["us"], priority=2)
    deploy("us-west", us_sim, us_east_2, priority=3)
    result, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "us-west"
    assert [a.region_id for a in attempts] == ["us-east", "us-west"]
    assert tenants_seen(eu_sim, "us-health") == []


# --- Fallback --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("control", "kind"), [
    ({"error_rate": 1.0, "error_status": 500}, "server_error"),
    ({"error_rate": 1.0, "error_status": 429}, "rate_limited"),
    ({"latency_ms": 2500}, "timeout"),
])
def test_a_failing_primary_falls_back_to_the_next_deployment(regions, us_sim, eu_sim, control, kind):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"], priority=1, timeout=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    us_sim.control(**control)
    result, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "secondary"
    assert result.completion_tokens == 8
    assert attempts[0].error_kind == kind and not attempts[0].ok
    assert attempts[1].ok
    assert len(tenants_seen(us_sim, "acme")) == 1
    assert len(tenants_seen(eu_sim, "acme")) == 1


def test_a_refused_connection_falls_back_to_the_next_deployment(regions, eu_sim):
    tenant = make_tenant("acme")
    deploy("gone", closed_port_url(), regions["us"], priority=1)
    deploy("alive", eu_sim, regions["eu"], priority=2)
    _, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "alive"
    assert attempts[0].error_kind == "connection"


def test_rejected_credentials_fall_back_to_a_deployment_whose_key_works(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    us_sim.control(require_key="sk-right")
    deploy("wrong-key", us_sim, regions["us"], priority=1, api_key="sk-wrong")
    deploy("right-key", us_sim, regions["us"], priority=2, api_key="sk-right")
    _, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "right-key"
    assert attempts[0].error_kind == "auth"


def test_an_invalid_request_is_not_retried_elsewhere(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"], priority=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    us_sim.control(error_rate=1.0, error_status=400)
    with pytest.raises(router.UpstreamRejected) as caught:
        call(router.complete_with_fallback, tenant, request(tenant))
    assert caught.value.status == 400
    assert tenants_seen(eu_sim, "acme") == []


def test_every_deployment_failing_is_a_502_that_names_them(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"], priority=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    us_sim.control(error_rate=1.0, error_status=500)
    eu_sim.control(error_rate=1.0, error_status=503)
    with pytest.raises(router.NoDeploymentAvailable) as caught:
        call(router.complete_with_fallback, tenant, request(tenant))
    assert caught.value.status == 502
    assert "primary (server_error)" in caught.value.message
    assert "secondary (server_error)" in caught.value.message
    assert len(caught.value.attempts) == 2


def test_every_deployment_timing_out_is_a_504(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"], priority=1, timeout=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2, timeout=1)
    us_sim.control(latency_ms=2000)
    eu_sim.control(latency_ms=2000)
    with pytest.raises(router.NoDeploymentAvailable) as caught:
        call(router.complete_with_fallback, tenant, request(tenant))
    assert caught.value.status == 504
    assert "timed out" in caught.value.message


# --- Streaming -------------------------------------------------------------------------------------

def test_a_stream_falls_back_before_its_first_byte(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"], priority=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    us_sim.control(error_rate=1.0, error_status=502)
    snapshot, deltas, attempts = stream_all(tenant, request(tenant, stream=True))
    assert snapshot.name == "secondary"
    assert len("".join(d.text for d in deltas).split()) == 8
    assert deltas[-1].completion_tokens == 8 and deltas[-1].finish_reason == "stop"
    assert [a.ok for a in attempts] == [False, True]


def test_an_anthropic_deployment_streams_through_the_router_as_deltas(regions, eu_sim):
    tenant = make_tenant("acme")
    deploy("claude", eu_sim, regions["eu"], provider="anthropic", model="claude-3-5-haiku")
    chat = ChatRequest(
        model="claude-3-5-haiku", stream=True, tenant_id=tenant.id, request_id="r",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    snapshot, deltas, _ = stream_all(tenant, chat)
    assert snapshot.provider == "anthropic"
    assert all(d.text for d in deltas[:-1])
    assert deltas[-1].prompt_tokens == 3  # "Be brief." + "Hi" = 11 characters
    assert deltas[-1].completion_tokens == 8
    assert eu_sim.requests()[-1]["path"] == "/v1/messages"


def wait_for(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_closing_a_stream_midway_closes_the_upstream_connection(regions, us_sim):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"])
    us_sim.control(token_latency_ms=100, output_tokens=30)

    async def read_two_then_leave():
        _, deltas = await router.stream_with_fallback(tenant, request(tenant, stream=True))
        got = [await deltas.__anext__(), await deltas.__anext__()]
        await deltas.aclose()
        return got

    got = call(read_two_then_leave)
    assert all(d.text for d in got)
    assert wait_for(lambda: us_sim.requests() and us_sim.requests()[-1]["status"] == 499)
    assert us_sim.stats()["in_flight"] == 0


def test_a_cancelled_call_frees_the_upstream_and_does_not_count_against_its_health(regions, us_sim, redis_client):
    import asyncio

    tenant = make_tenant("acme")
    primary = deploy("primary", us_sim, regions["us"])
    us_sim.control(hang=True)

    async def give_up():
        task = asyncio.ensure_future(router.complete_with_fallback(tenant, request(tenant)))
        await asyncio.sleep(0.5)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"

    assert call(give_up) == "cancelled"
    assert wait_for(lambda: us_sim.requests() and us_sim.requests()[-1]["status"] == 499)
    assert redis_client.get(key("health", "fail", primary.pk)) is None


# --- Passive health ---------------------------------------------------------------------------------

def test_consecutive_failures_cool_a_deployment_down_and_it_is_skipped(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    primary = deploy("primary", us_sim, regions["us"], priority=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    us_sim.control(error_rate=1.0, error_status=500)
    for _ in range(3):
        _, snapshot, _ = call(router.complete_with_fallback, tenant, request(tenant))
        assert snapshot.name == "secondary"
    assert health.is_cooling_down(primary.pk)
    assert 0 < health.cooldown_remaining(primary.pk) <= 30
    us_sim.clear_requests()
    _, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    assert len(attempts) == 1 and snapshot.name == "secondary"
    assert us_sim.requests() == []
    health.end_cooldown(primary.pk)
    us_sim.reset()
    _, snapshot, _ = call(router.complete_with_fallback, tenant, request(tenant))
    assert snapshot.name == "primary"


def test_a_success_resets_the_failure_streak(regions, us_sim, redis_client):
    tenant = make_tenant("acme")
    primary = deploy("primary", us_sim, regions["us"], priority=1)
    for _ in range(2):
        health.record_failure(primary.pk)
    assert redis_client.get(key("health", "fail", primary.pk)) == b"2"
    call(router.complete_with_fallback, tenant, request(tenant))
    assert redis_client.get(key("health", "fail", primary.pk)) is None
    health.record_failure(primary.pk)
    assert not health.is_cooling_down(primary.pk)


def test_when_every_eligible_deployment_is_cooling_down_the_answer_is_503(regions, us_sim):
    tenant = make_tenant("acme")
    primary = deploy("primary", us_sim, regions["us"])
    for _ in range(3):
        health.record_failure(primary.pk)
    with pytest.raises(router.NoDeploymentAvailable) as caught:
        call(router.complete_with_fallback, tenant, request(tenant))
    assert caught.value.status == 503
    assert "cooling down" in caught.value.message


def test_health_is_read_once_per_interval_but_this_processs_own_failures_count_at_once(regions, us_sim, eu_sim,
                                                                                      settings):
    settings.REGIONS_HEALTH_CACHE_SECONDS = 60
    tenant = make_tenant("acme")
    primary = deploy("primary", us_sim, regions["us"], priority=1)
    other = deploy("other-model", eu_sim, regions["eu"], model="sim-large")
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    assert call(router.eligible_deployments, tenant, "sim-small")[0].name == "primary"
    # Another process cools a deployment down: this one keeps its last reading until the interval passes.
    for _ in range(3):
        health.record_failure(other.pk)
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-large")] == ["other-model"]
    # This process's own failures take effect on its next request.
    us_sim.control(error_rate=1.0, error_status=500)
    for _ in range(3):
        call(router.complete_with_fallback, tenant, request(tenant))
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["secondary"]
    assert health.is_cooling_down(primary.pk)
    settings.REGIONS_HEALTH_CACHE_SECONDS = 0
    assert call(router.eligible_deployments, tenant, "sim-large") == []


# --- The routing table cache ------------------------------------------------------------------------

def test_a_committed_change_reaches_the_router_without_waiting(regions, us_sim, eu_sim,
                                                              django_capture_on_commit_callbacks):
    tenant = make_tenant("acme")
    with django_capture_on_commit_callbacks(execute=True):
        primary = deploy("primary", us_sim, regions["us"], priority=1)
        deploy("secondary", eu_sim, regions["eu"], priority=2)
    assert call(router.eligible_deployments, tenant, "sim-small")[0].name == "primary"
    with django_capture_on_commit_callbacks(execute=True):
        primary.enabled = False
        primary.save()
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["secondary"]


def test_another_process_bumping_the_version_makes_this_one_reload(regions, us_sim, eu_sim, redis_client):
    tenant = make_tenant("acme")
    primary = deploy("primary", us_sim, regions["us"], priority=1)
    assert call(router.eligible_deployments, tenant, "sim-small")[0].name == "primary"
    # A change saved elsewhere: the row changes, this process hears nothing but the Redis counter.
    Deployment.objects.filter(pk=primary.pk).update(priority=9)
    deploy_row = deploy("secondary", eu_sim, regions["eu"], priority=2)
    assert deploy_row.pk
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["primary"]
    redis_client.incr(key("regions", "routing-version"))
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["secondary", "primary"]


def test_routing_serves_from_memory_without_a_database_query(regions, us_sim, django_assert_num_queries):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"])
    call(router.eligible_deployments, tenant, "sim-small")
    with django_assert_num_queries(0):
        call(router.complete_with_fallback, tenant, request(tenant))


def test_a_deployment_whose_credential_cannot_be_decrypted_is_skipped_not_fatal(regions, us_sim, eu_sim):
    tenant = make_tenant("acme")
    broken = deploy("broken", us_sim, regions["us"], priority=1)
    good = deploy("good", eu_sim, regions["eu"], priority=2)
    # Move a sealed credential to another row: its binding no longer matches, so it cannot open.
    Deployment.objects.filter(pk=broken.pk).update(
        api_key=Deployment.objects.filter(pk=good.pk).values_list("api_key", flat=True).get()
    )
    assert [s.name for s in call(router.eligible_deployments, tenant, "sim-small")] == ["good"]


def test_routing_and_fallback_keep_working_while_redis_is_down(regions, us_sim, eu_sim, settings):
    tenant = make_tenant("acme")
    deploy("primary", us_sim, regions["us"], priority=1)
    deploy("secondary", eu_sim, regions["eu"], priority=2)
    us_sim.control(error_rate=1.0, error_status=500)
    original = settings.REDIS_URL
    settings.REDIS_URL = closed_port_url().replace("http://", "redis://") + "/0"
    reset_clients()
    try:
        result, snapshot, attempts = call(router.complete_with_fallback, tenant, request(tenant))
    finally:
        settings.REDIS_URL = original
        reset_clients()
    assert snapshot.name == "secondary"
    assert [a.error_kind for a in attempts] == ["server_error", None]
    assert result.text


def test_a_snapshot_never_shows_its_credential():
    snapshot = router.DeploymentSnapshot(
        id="1", name="n", model="m", provider="openai", upstream_model="m", base_url="http://x", api_key="sk-secret",
        extra_headers={}, region_id="r", region_group="us", tenant_id=None,
    )
    assert "sk-secret" not in repr(snapshot)
