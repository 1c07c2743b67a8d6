"""Active health checks against real simulator processes and a loopback server that never answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings

from apps.regions import health, healthchecks, tasks
from apps.regions.models import Deployment, HealthCheckRollup, Region
from bench.simulator import SimulatorProcess


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="probe-sim") as process:
        yield process


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel completes the handshake) and never answers: a hung upstream."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture(autouse=True)
def fast_probes(settings, sim):
    settings.SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS = 1.0
    settings.SWITCHYARD_HEALTH_PROBE_FAILURES = 2
    sim.reset()
    sim.reset_stats()


@pytest.fixture
def region(db):
    return Region.objects.create(id="us-east", name="US East", group="us")


def deploy(name, base_url, region, provider="simulator", **extra) -> Deployment:
    return Deployment.objects.create(name=name, model="sim-small", provider=provider, base_url=base_url,
                                     api_key="sk-probe", region=region, timeout_seconds=5, **extra)


def test_a_probe_keeps_latency_and_status_in_redis_and_a_per_minute_rollup_in_postgres(region, sim):
    deployment = deploy("ok", sim.url, region)
    tasks.run_health_checks()
    tasks.run_health_checks()
    state = healthchecks.current_state([deployment.pk])[str(deployment.pk)]
    assert state["ok"] is True
    assert state["latency_ms"] > 0
    assert state["detail"] == "healthy"
    assert state["healthy_since"] is not None
    rollup = HealthCheckRollup.objects.get(deployment=deployment)
    assert rollup.checks == 2
    assert rollup.failures == 0
    assert rollup.latency_ms_max >= rollup.latency_ms_avg > 0
    assert rollup.minute.second == 0


def test_each_provider_kind_gets_its_own_cheap_probe():
    def target(provider, base_url="https://api.example.test/v1"):
        return healthchecks.Target(id="x", provider=provider, base_url=base_url, api_key="sk-1",
                                   extra_headers={}, timeout=1)

    url, headers = healthchecks.probe_request(target("openai"))
    assert url == "https://api.example.test/v1/models"
    assert headers["Authorization"] == "Bearer sk-1"
    url, headers = healthchecks.probe_request(target("anthropic", "https://api.anthropic.test"))
    assert url == "https://api.anthropic.test/v1/models"
    assert headers["x-api-key"] == "sk-1" and "anthropic-version" in headers
    url, headers = healthchecks.probe_request(target("simulator", "http://127.0.0.1:9/v1"))
    assert url == "http://127.0.0.1:9/health"
    # Azure-style: the key goes in the header that names the placeholder, and only there.
    azure = healthchecks.Target(id="x", provider="openai", base_url="https://res.example.test/openai/v1?api-version=1",
                                api_key="sk-2", extra_headers={"api-key": "{api_key}"}, timeout=1)
    url, headers = healthchecks.probe_request(azure)
    assert url == "https://res.example.test/openai/v1/models?api-version=1"
    assert headers["api-key"] == "sk-2" and "Authorization" not in headers
    # A kind no adapter serves is a failed probe with a reason, not an exception.
    unknown = healthchecks.Target(id="x", provider="nope", base_url="http://127.0.0.1:9", api_key=None,
                                  extra_headers={}, timeout=1)
    probe = asyncio.run(healthchecks.probe(None, unknown))
    assert not probe.ok and "no probe for provider kind 'nope'" in probe.detail


def test_a_down_deployment_cools_down_after_two_failed_probes_and_a_good_probe_brings_it_back(region, sim):
    deployment = deploy("flaky", sim.url, region)
    sim.control(down=True)
    tasks.run_health_checks()
    assert not health.is_cooling_down(deployment.pk)  # one failure is a blip
    tasks.run_health_checks()
    assert health.is_cooling_down(deployment.pk)
    state = healthchecks.current_state([deployment.pk])[str(deployment.pk)]
    assert state["ok"] is False and state["detail"] == "HTTP 503" and state["failures"] == 2
    sim.control(down=False)
    tasks.run_health_checks()
    assert not health.is_cooling_down(deployment.pk)
    assert HealthCheckRollup.objects.get(deployment=deployment).failures == 2


def test_a_good_probe_never_ends_a_cool_down_that_live_traffic_started_while_probes_passed(region, sim):
    deployment = deploy("passive", sim.url, region)
    tasks.run_health_checks()
    for _ in range(django_settings.REGIONS_HEALTH_FAILURE_THRESHOLD):
        health.record_failure(deployment.pk)
    assert health.is_cooling_down(deployment.pk)
    tasks.run_health_checks()
    assert health.is_cooling_down(deployment.pk)


def test_a_probe_that_sees_a_failing_deployment_recover_ends_the_cool_down_live_traffic_started(region, sim):
    deployment = deploy("recovering", sim.url, region)
    sim.control(down=True)
    tasks.run_health_checks()
    for _ in range(django_settings.REGIONS_HEALTH_FAILURE_THRESHOLD):
        health.record_failure(deployment.pk)
    sim.control(down=False)
    tasks.run_health_checks()
    assert not health.is_cooling_down(deployment.pk)


def test_one_hanging_deployment_times_out_without_holding_up_the_others(region, sim, silent_server):
    hung = deploy("hung", silent_server, region)
    fine = [deploy(f"fine-{n}", sim.url, region) for n in range(5)]
    started = time.monotonic()
    probes = healthchecks.run_checks()
    elapsed = time.monotonic() - started
    assert elapsed < 2.5  # one 1 s timeout, not one per deployment
    by_id = {p.deployment_id: p for p in probes}
    assert by_id[str(hung.pk)].ok is False
    assert by_id[str(hung.pk)].detail == "no answer within 1 s"
    assert all(by_id[str(d.pk)].ok for d in fine)


def test_overlapping_runs_never_pile_up_probes(transactional_db, region, sim, silent_server):
    deploy("hung", silent_server, region)
    deploy("fine", sim.url, region)
    from django.db import connection

    results = []

    def run():
        try:
            results.append(healthchecks.run_checks())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in results) == [0, 0, 2]
    assert sim.stats()["health_checks"] == 1


def test_the_beat_runs_health_checks_every_5_seconds_and_drops_a_late_tick():
    from console import settings as project_settings

    entry = project_settings.beat_schedule(django_settings.SWITCHYARD_BEAT)["regions-health-checks"]
    assert entry["task"] == "apps.regions.tasks.run_health_checks"
    assert entry["schedule"] == 5.0
    assert entry["options"]["expires"] < 5.0


def test_old_probe_history_is_pruned(region, sim):
    from datetime import timedelta

    from django.utils import timezone

    deployment = deploy("old", sim.url, region)
    HealthCheckRollup.objects.create(deployment=deployment, minute=timezone.now() - timedelta(days=40), checks=1)
    tasks.run_health_checks()
    assert tasks.prune_health_history() == 1
    assert HealthCheckRollup.objects.filter(deployment=deployment).count() == 1
