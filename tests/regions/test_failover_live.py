"""Failover end to end: a real gateway process, two simulator processes as two regions, health checks every 5 s.

Stopping the primary region's simulator moves traffic to the other region within 15 s (requests in flight at that
moment may fail, none after); restarting it brings traffic back only after the failback hysteresis; a tenant whose
residency allows only the primary's region never reaches the other one, as the simulators' own logs show.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from django.db import connection

from apps.regions import failover, tasks
from apps.regions.models import Deployment, FailoverEvent, Region
from bench.simulator import SimulatorProcess
from tests.gateway.live import LiveGateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HYSTERESIS_SECONDS = 8
CHECK_SECONDS = 5


@dataclass
class Outcome:
    started: float
    finished: float
    status: int
    region: str | None
    message: str


class Traffic(threading.Thread):
    """One client sending generate calls back to back, remembering each outcome."""

    def __init__(self, url: str, key: str, pause: float):
        super().__init__(daemon=True)
        self.url, self.key, self.pause = url, key, pause
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()

    def run(self):
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post(self.url + "/api/v1/generate", headers={"Authorization": f"Bearer {self.key}"},
                                           json={"prompt": "route me", "model": "sim-small", "max_tokens": 4})
                    body = response.json()
                    region = body.get("region") if response.status_code == 200 else None
                    message = body.get("error", {}).get("message", "") if response.status_code != 200 else ""
                    self.outcomes.append(Outcome(started, time.monotonic(), response.status_code, region, message))
                except httpx.HTTPError as exc:
                    self.outcomes.append(Outcome(started, time.monotonic(), 0, None, repr(exc)))
                time.sleep(self.pause)


class HealthBeat(threading.Thread):
    """What the beat does every 5 s: the health-check task (called directly; a worker adds nothing here)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                tasks.run_health_checks()
                self.stop.wait(CHECK_SECONDS)
        finally:
            connection.close()


@pytest.fixture
def eu_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="eu-west-sim", output_tokens=4) as process:
        yield process


@pytest.fixture
def us_sim() -> Iterator[SimulatorProcess]:
    process = SimulatorProcess(name="us-east-sim", output_tokens=4).start()
    holder = {"sim": process}
    yield holder
    holder["sim"].stop()


def truncate_usage() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE gateway_usagerecord")


def wait_for(predicate, timeout: float, step: float = 0.1) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def test_stopping_the_primary_moves_traffic_and_restarting_it_fails_back_after_the_hysteresis(
        personas, us_sim, eu_sim, settings):
    from apps.gateway.services import create_api_key
    from apps.keys.services import clear_key_cache

    clear_key_cache()
    failover.forget_cached_orders()
    settings.SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS = 1.0
    us = Region.objects.create(id="us-east", name="US East", group="us")
    eu = Region.objects.create(id="eu-west", name="EU West", group="eu")
    us_deployment = Deployment.objects.create(
        name="small@us", model="sim-small", provider="simulator", base_url=us_sim["sim"].url, api_key="sk", region=us,
        priority=100, timeout_seconds=3)
    Deployment.objects.create(name="small@eu", model="sim-small", provider="simulator", base_url=eu_sim.url,
                              api_key="sk", region=eu, priority=200, timeout_seconds=3)
    failover.set_policy(actor=personas.platform_admin, model="sim-small", primary_region=us,
                        failback_after_seconds=HYSTERESIS_SECONDS)
    strict = personas.tenant_b
    strict.data_residency = "us"
    strict.save()
    _, any_key = create_api_key(actor=personas.a_admin, tenant=personas.tenant_a, name="any", user=personas.a_member)
    _, us_key = create_api_key(actor=personas.b_admin, tenant=strict, name="us-only", user=personas.b_admin)
    us_port = us_sim["sim"].port

    beat = HealthBeat()
    with LiveGateway(database_name=connection.settings_dict["NAME"]) as gateway:
        beat.start()
        anywhere = Traffic(gateway.url, any_key, pause=0.1)
        us_only = Traffic(gateway.url, us_key, pause=0.3)
        try:
            anywhere.start()
            us_only.start()
            wait_for(lambda: len(anywhere.outcomes) >= 5 and len(us_only.outcomes) >= 3, 20)
            assert {o.region for o in anywhere.outcomes} == {"us-east"}
            assert all(o.status == 200 for o in anywhere.outcomes + us_only.outcomes)

            # The primary goes away.
            stopped_at = time.monotonic()
            us_sim["sim"].stop()
            moved_at = wait_for(
                lambda: any(o.started > stopped_at and o.region == "eu-west" for o in anywhere.outcomes), 15)
            assert moved_at - stopped_at < 15
            wait_for(lambda: FailoverEvent.objects.filter(kind="failover").exists(), 15)
            failed_over_at = time.monotonic()
            assert failed_over_at - stopped_at < 15
            refused_at = wait_for(lambda: any(o.started > stopped_at and o.status == 503 for o in us_only.outcomes), 15)
            assert refused_at - stopped_at < 15
            time.sleep(2)

            after_stop = [o for o in anywhere.outcomes if o.started > stopped_at + 0.5]
            assert after_stop and all(o.status == 200 and o.region == "eu-west" for o in after_stop), [
                (round(o.started - stopped_at, 2), o.status, o.region, o.message) for o in after_stop if o.status != 200]
            strict_after = [o for o in us_only.outcomes if o.started > stopped_at]
            assert strict_after and all(o.status in (502, 503) for o in strict_after)
            refusal = next(o for o in strict_after if o.status == 503)
            assert "residency (us)" in refusal.message and "no healthy region" in refusal.message

            # The primary comes back on its old address; traffic stays put until the hysteresis has passed.
            restarted = SimulatorProcess(name="us-east-sim", output_tokens=4, port=us_port).start()
            us_sim["sim"] = restarted
            restarted_at = time.monotonic()
            back_at = wait_for(
                lambda: any(o.started > restarted_at and o.region == "us-east" for o in anywhere.outcomes),
                HYSTERESIS_SECONDS + 3 * CHECK_SECONDS)
            event = FailoverEvent.objects.get(kind="failback")
            assert (event.from_region, event.to_region) == ("eu-west", "us-east")
            assert back_at - restarted_at >= HYSTERESIS_SECONDS
            between = [o for o in anywhere.outcomes if restarted_at < o.started and o.finished < back_at - 1]
            assert between and all(o.region == "eu-west" for o in between)  # no flapping during the hysteresis
            wait_for(lambda: any(o.started > back_at and o.status == 200 for o in us_only.outcomes), 10)
            print(f"\nMEASURED traffic moved {moved_at - stopped_at:.2f} s after the stop; failover event "
                  f"{failed_over_at - stopped_at:.2f} s; us-only 503 {refused_at - stopped_at:.2f} s; failback "
                  f"{back_at - restarted_at:.2f} s after the restart (hysteresis {HYSTERESIS_SECONDS} s); "
                  f"requests: {len(anywhere.outcomes)} any-region, {len(us_only.outcomes)} us-only")
            time.sleep(1)
        finally:
            anywhere.stop.set()
            us_only.stop.set()
            beat.stop.set()
            anywhere.join(15)
            us_only.join(15)
            beat.join(15)

    # The simulators' own logs: the us-only tenant never reached the EU region.
    eu_tenants = {r["headers"].get("x-switchyard-tenant") for r in eu_sim.requests()}
    assert strict.pk not in eu_tenants
    assert personas.tenant_a.pk in eu_tenants
    assert any(r["headers"].get("x-switchyard-tenant") == strict.pk for r in us_sim["sim"].requests())
    assert list(FailoverEvent.objects.order_by("created_at").values_list("kind", flat=True)) == ["failover", "failback"]
    assert not Deployment.objects.get(pk=us_deployment.pk).health_rollups.filter(failures__gt=0).count() == 0
    truncate_usage()
