"""The concurrency slot is released on every path: success, upstream error, timeout, and a
client that disconnects mid-call or mid-stream."""

from __future__ import annotations

import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from apps.core.redis import reset_clients
from tests.gateway.conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def key_with_a_slot_limit(world, personas):
    """A per-key concurrency limit, so the key holds a lease of its own too."""
    from apps.gateway import services

    services.update_api_key(actor=personas.a_admin, api_key=world.key_row, max_concurrent=5)


def slots_in_use(world) -> tuple[int, int]:
    from apps.gateway import quotas

    async def read():
        tenant = await quotas.usage(tenant_id="tenant-a")
        key = await quotas.usage(tenant_id="tenant-a", key_id=str(world.key_row.pk))
        return tenant["max_concurrent"], key["max_concurrent"]

    try:
        return async_to_sync(read)()
    finally:
        reset_clients()


def wait_for_slots(world, expected=(0, 0), timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if slots_in_use(world) == expected:
            return
        time.sleep(0.05)
    assert slots_in_use(world) == expected


def post(gateway, world, body, timeout=20):
    return httpx.post(gateway.url + "/api/v1/generate", json={"model": "sim-small", **body},
                      headers={"Authorization": f"Bearer {world.key}"}, timeout=timeout)


def test_a_slot_is_held_during_the_call_and_released_after_success(live_gateway, world, sim_us):
    import threading

    sim_us.control(latency_ms=800)
    thread = threading.Thread(target=post, args=(live_gateway, world, {"prompt": "hold"}))
    thread.start()
    time.sleep(0.4)
    assert slots_in_use(world) == (1, 1)
    thread.join()
    wait_for_slots(world)


def test_the_slot_is_released_after_an_upstream_error(live_gateway, world, sim_us, sim_eu):
    for sim in (sim_us, sim_eu):
        sim.control(error_rate=1.0, error_status=500)
    assert post(live_gateway, world, {"prompt": "fail"}).status_code == 502
    wait_for_slots(world)
    assert usage_rows(tenant_id="tenant-a")[0].status == "upstream_error"


def test_the_slot_is_released_after_a_timeout(live_gateway, world, sim_us, sim_eu):
    from apps.regions.models import Deployment

    for deployment in Deployment.objects.filter(model="sim-small"):
        deployment.timeout_seconds = 1
        deployment.save()
    for sim in (sim_us, sim_eu):
        sim.control(latency_ms=2500)
    assert post(live_gateway, world, {"prompt": "slow"}).status_code == 504
    wait_for_slots(world)


def test_the_slot_is_released_when_the_client_disconnects_mid_call(live_gateway, world, sim_us):
    sim_us.control(latency_ms=3000)
    with pytest.raises(httpx.ReadTimeout):
        post(live_gateway, world, {"prompt": "gone"}, timeout=0.5)
    # Released long before the upstream would have answered.
    wait_for_slots(world, timeout=1.5)
    rows = usage_rows(tenant_id="tenant-a")
    assert [r.status for r in rows] == ["cancelled"]


def test_the_slot_is_released_when_the_client_disconnects_mid_stream(live_gateway, world, sim_us):
    sim_us.control(token_latency_ms=400, output_tokens=20)
    with httpx.stream("POST", live_gateway.url + "/api/v1/generate", timeout=20,
                      json={"model": "sim-small", "prompt": "stream then leave", "stream": True},
                      headers={"Authorization": f"Bearer {world.key}"}) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert '"delta"' in first
        assert slots_in_use(world) == (1, 1)
    wait_for_slots(world, timeout=3)
    rows = usage_rows(tenant_id="tenant-a")
    assert [r.status for r in rows] == ["cancelled"]
    assert rows[0].completion_tokens < 20
