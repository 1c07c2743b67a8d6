"""Fixtures for the gateway's end-to-end tests: two simulator regions, a live Switchyard
(uvicorn subprocess on the test database), and a small world of deployments, prices and keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

import pytest

# pytest-django reads the settings before tests/conftest.py sets this process's Redis prefix, so
# settings would keep the shared "sy:" prefix and parallel test runs would wipe each other's
# counters. Apply the per-process prefix here (the live servers inherit it).
from django.conf import settings as _settings  # noqa: E402

from bench.simulator import SimulatorProcess
from tests.gateway.live import LiveGateway

_settings.REDIS_KEY_PREFIX = os.environ["SWITCHYARD_REDIS_PREFIX"]


@pytest.fixture(scope="session")
def sim_us():
    with SimulatorProcess(name="us-east-sim", output_tokens=8) as process:
        yield process


@pytest.fixture(scope="session")
def sim_eu():
    with SimulatorProcess(name="eu-west-sim", output_tokens=8) as process:
        yield process


@pytest.fixture(scope="session")
def live_gateway(django_db_setup, django_db_blocker):
    from django.db import connection

    with LiveGateway(database_name=connection.settings_dict["NAME"]) as gateway:
        yield gateway


@dataclass
class World:
    tenant: object
    other_tenant: object
    key: str
    key_row: object
    other_key: str
    us: object
    eu: object
    deployments: dict


def add_deployment(name, sim, region, *, model="sim-small", tenant=None, priority=100, timeout=5, enabled=True):
    from apps.regions.models import Deployment

    return Deployment.objects.create(
        name=name, model=model, provider="simulator", upstream_model=model, base_url=sim.url, api_key="sk-sim",
        region=region, tenant=tenant, priority=priority, timeout_seconds=timeout, enabled=enabled,
    )


@pytest.fixture
def world(transactional_db, personas, sim_us, sim_eu, redis_client):
    """tenant-a (key for its member) and tenant-b (key for its admin); sim-small in us-east and
    eu-west, sim-large in us-east only; a price for sim-small."""
    from apps.gateway import services
    from apps.keys.services import clear_key_cache
    from apps.regions.models import Region

    truncate_usage()
    # The keyring tables were flushed with the last test: forget this process's cached data keys.
    clear_key_cache()
    for sim in (sim_us, sim_eu):
        sim.reset()
        sim.clear_requests()
    us = Region.objects.create(id="us-east", name="US East", group="us")
    eu = Region.objects.create(id="eu-west", name="EU West", group="eu")
    deployments = {
        "small-us": add_deployment("sim-small@us-east", sim_us, us),
        "small-eu": add_deployment("sim-small@eu-west", sim_eu, eu, priority=200),
        "large-us": add_deployment("sim-large@us-east", sim_us, us, model="sim-large"),
    }
    services.set_model_price(actor=personas.platform_admin, model="sim-small", input_per_1k=Decimal("0.5"),
                             output_per_1k=Decimal("1.5"))
    key_row, secret = services.create_api_key(actor=personas.a_admin, tenant=personas.tenant_a, name="test",
                                              user=personas.a_member)
    _, other = services.create_api_key(actor=personas.b_admin, tenant=personas.tenant_b, name="b",
                                       user=personas.b_admin)
    yield World(tenant=personas.tenant_a, other_tenant=personas.tenant_b, key=secret, key_row=key_row,
                other_key=other, us=us, eu=eu, deployments=deployments)
    wait_drained()
    truncate_usage()


def truncate_usage() -> None:
    """The usage table is not managed by Django, so the test database flush leaves it alone."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE gateway_usagerecord")


def wait_drained(timeout: float = 30.0) -> None:
    """Drain the usage queue here, waiting out a server's drainer that holds the lock."""
    import time

    from apps.core.redis import get_redis
    from apps.gateway import usage

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        usage.drain_all()
        if usage.queue_length() == 0 and not get_redis().exists(usage.lock_key()):
            return
        time.sleep(0.05)
    raise AssertionError(f"usage queue not drained: {usage.queue_length()} left")


def usage_rows(**filters):
    """Usage records once the queue is drained (what the servers' writers store)."""
    from apps.gateway.models import UsageRecord

    wait_drained()
    return list(UsageRecord.objects.filter(**filters).order_by("created_at"))
