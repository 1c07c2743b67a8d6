"""Failover and failback decisions over two real simulator regions: events, audit, notifications, hooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.models import NotificationChannel
from apps.regions import failover, health, hooks, tasks
from apps.regions.models import Deployment, FailoverEvent, FailoverPolicy, Region
from bench.simulator import SimulatorProcess


class Receiver:
    """A real HTTP server on loopback that records every POST (a webhook receiver)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def us_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="us-east-sim") as process:
        yield process


@pytest.fixture(scope="module")
def eu_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="eu-west-sim") as process:
        yield process


@pytest.fixture(autouse=True)
def reset(us_sim, eu_sim, settings):
    settings.SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS = 1.0
    settings.SWITCHYARD_HEALTH_PROBE_FAILURES = 1
    for sim in (us_sim, eu_sim):
        sim.reset()
    failover.forget_cached_orders()
    yield
    failover.forget_cached_orders()


@pytest.fixture
def world(db, personas, us_sim, eu_sim):
    us = Region.objects.create(id="us-east", name="US East", group="us")
    eu = Region.objects.create(id="eu-west", name="EU West", group="eu")
    for name, sim, region in (("small@us", us_sim, us), ("small@eu", eu_sim, eu)):
        Deployment.objects.create(name=name, model="sim-small", provider="simulator", base_url=sim.url,
                                  api_key="sk", region=region, timeout_seconds=5)
    policy = failover.set_policy(actor=personas.platform_admin, model="sim-small", primary_region=us,
                                 failback_after_seconds=60)
    return {"us": us, "eu": eu, "policy": policy}


def test_a_healthy_primary_keeps_the_traffic_and_is_published_first(world):
    assert tasks.run_health_checks()["events"] == 0
    policy = FailoverPolicy.objects.get(pk="sim-small")
    assert policy.active_region_id == "us-east"
    assert policy.primary_healthy_since is not None
    assert async_to_sync(failover.aregion_orders)()["sim-small"] == ["us-east", "eu-west"]


def test_an_unhealthy_primary_fails_over_with_an_event_an_audit_record_a_notification_and_the_hook(
        world, us_sim, receiver, settings, personas, django_capture_on_commit_callbacks):
    from console.celery import app

    settings.SWITCHYARD_FAILOVER_WEBHOOK_URL = receiver.url + "/redirect"
    settings.SWITCHYARD_FAILOVER_WEBHOOK_SECRET = "hook-secret"
    NotificationChannel.objects.create(tenant=personas.tenant_a, kind="webhook", name="ops",
                                       target=receiver.url + "/notify")
    us_sim.control(down=True)
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            result = tasks.run_health_checks()
    finally:
        app.conf.task_always_eager = False
    assert result["events"] == 1
    event = FailoverEvent.objects.get()
    assert (event.kind, event.from_region, event.to_region) == ("failover", "us-east", "eu-west")
    assert "us-east has no healthy deployment" in event.reason
    assert FailoverPolicy.objects.get(pk="sim-small").active_region_id == "eu-west"
    assert async_to_sync(failover.aregion_orders)()["sim-small"] == ["eu-west", "us-east"]

    audit = AuditEvent.objects.get(action="regions.failover")
    assert audit.tenant_id is None
    assert audit.metadata["to_region"] == "eu-west" and audit.metadata["model"] == "sim-small"

    by_path = {r["path"]: r for r in receiver.received}
    notification = json.loads(by_path["/notify"]["body"])
    assert notification["event"] == "region.failover" and notification["severity"] == "critical"
    hook = by_path["/redirect"]
    payload = json.loads(hook["body"])
    assert payload["primary"] == "eu-west" and payload["model"] == "sim-small"
    expected = hmac.new(b"hook-secret", hook["headers"]["X-Switchyard-Timestamp"].encode() + b"." + hook["body"],
                        hashlib.sha256).hexdigest()
    assert hook["headers"]["X-Switchyard-Signature"] == f"sha256={expected}"
    assert FailoverEvent.objects.get().hook_results == [{"hook": "webhook", "ok": True, "detail": "HTTP 204"}]


def test_failback_waits_for_the_primary_to_stay_healthy_through_the_hysteresis(world, us_sim):
    us_sim.control(down=True)
    tasks.run_health_checks()
    us_sim.control(down=False)
    tasks.run_health_checks()
    policy = FailoverPolicy.objects.get(pk="sim-small")
    assert policy.active_region_id == "eu-west"  # healthy again, but not for 60 s yet
    assert not health.is_cooling_down(Deployment.objects.get(name="small@us").pk)

    # A flap resets the clock: healthy time before it does not count.
    FailoverPolicy.objects.filter(pk="sim-small").update(primary_healthy_since=timezone.now() - timedelta(seconds=50))
    us_sim.control(down=True)
    tasks.run_health_checks()
    assert FailoverPolicy.objects.get(pk="sim-small").primary_healthy_since is None
    us_sim.control(down=False)
    tasks.run_health_checks()
    assert FailoverPolicy.objects.get(pk="sim-small").active_region_id == "eu-west"

    FailoverPolicy.objects.filter(pk="sim-small").update(primary_healthy_since=timezone.now() - timedelta(seconds=61))
    assert tasks.run_health_checks()["events"] == 1
    event = FailoverEvent.objects.order_by("-created_at").first()
    assert (event.kind, event.from_region, event.to_region) == ("failback", "eu-west", "us-east")
    assert FailoverPolicy.objects.get(pk="sim-small").active_region_id == "us-east"
    assert [e.action for e in AuditEvent.objects.filter(action__in=["regions.failover", "regions.failback"]).order_by("seq")] == [
        "regions.failover", "regions.failback"]


def test_with_no_healthy_region_left_nothing_moves_and_no_event_is_invented(world, us_sim, eu_sim):
    us_sim.control(down=True)
    eu_sim.control(down=True)
    assert tasks.run_health_checks()["events"] == 0
    assert FailoverPolicy.objects.get(pk="sim-small").active_region_id == "us-east"


def test_the_fastest_healthy_region_is_chosen():
    regions = {
        "us-east": failover.RegionHealth("us-east", False, None, 1, 0),
        "eu-west": failover.RegionHealth("eu-west", True, 80.0, 1, 1),
        "eu-central": failover.RegionHealth("eu-central", True, 12.5, 2, 1),
        "apac": failover.RegionHealth("apac", True, None, 1, 1),
    }
    assert failover._ranked(regions, exclude={"us-east"}) == ["eu-central", "eu-west", "apac"]


def test_the_router_order_only_reorders_what_the_router_allowed(world, us_sim):
    from types import SimpleNamespace

    us_sim.control(down=True)
    tasks.run_health_checks()
    snapshots = [SimpleNamespace(region_id="us-east", name="a"), SimpleNamespace(region_id="eu-west", name="b")]
    ordered = async_to_sync(failover.aprefer_active)("sim-small", snapshots)
    assert [s.region_id for s in ordered] == ["eu-west", "us-east"]
    only_us = [SimpleNamespace(region_id="us-east", name="a")]
    assert async_to_sync(failover.aprefer_active)("sim-small", only_us) == only_us


def test_a_dns_provider_is_called_with_the_new_primary_and_a_failing_hook_is_recorded_not_raised(world):
    pointed = []

    class FakeDns(hooks.DnsProvider):
        def point(self, *, record, target):
            pointed.append((record, target))

    event = FailoverEvent.objects.create(model="sim-small", kind="failover", from_region="us-east",
                                         to_region="eu-west", reason="test")
    dns = hooks.DnsRedirectHook(FakeDns(), "{model}.llm.example", {"eu-west": "eu.llm.example"})
    broken = hooks.WebhookRedirectHook("http://127.0.0.1:9/nothing-listens", timeout=1)
    results = hooks.call_hooks(event, [dns, broken])
    assert pointed == [("sim-small.llm.example", "eu.llm.example")]
    assert results[0] == {"hook": "dns", "ok": True, "detail": "sim-small.llm.example -> eu.llm.example"}
    assert results[1]["ok"] is False and results[1]["detail"].startswith("webhook unreachable")


def test_a_policy_needs_a_deployment_in_its_primary_region(world, personas):
    from django.core.exceptions import ValidationError

    apac = Region.objects.create(id="ap-south", name="AP South", group="apac")
    with pytest.raises(ValidationError) as caught:
        failover.set_policy(actor=personas.platform_admin, model="sim-small", primary_region=apac)
    assert "primary_region" in caught.value.message_dict
    assert AuditEvent.objects.filter(action="regions.failover_policy.created").count() == 1
