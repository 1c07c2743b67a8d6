"""The demo seed (regions, simulator deployments, prices, one key per tenant) and the traffic
generator that makes usage show up in the console."""

from __future__ import annotations

import orjson
import pytest
from django.core.management import call_command

from tests.gateway.conftest import truncate_usage, usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_and_demo_traffic_produce_usage_for_each_demo_tenant(live_gateway, personas, sim_us, sim_eu,
                                                                  redis_client, settings, tmp_path, monkeypatch):
    from apps.gateway import services
    from apps.gateway.models import ModelPrice
    from apps.keys.services import clear_key_cache
    from apps.regions.models import Deployment

    truncate_usage()
    clear_key_cache()
    settings.SWITCHYARD_DATA_DIR = tmp_path
    monkeypatch.setenv("SWITCHYARD_SIMULATOR_URLS", f"us-east={sim_us.url},eu-west={sim_eu.url}")
    keys = services.seed_demo_gateway(tenants=[personas.tenant_a, personas.tenant_b])
    assert set(keys) == {"tenant-a", "tenant-b"}
    assert orjson.loads((tmp_path / "demo_api_keys.json").read_bytes()) == keys
    assert Deployment.objects.filter(provider="simulator").count() == 4
    assert ModelPrice.objects.filter(model="sim-small").exists()
    # Seeding again replaces the keys and adds nothing else.
    again = services.seed_demo_gateway(tenants=[personas.tenant_a, personas.tenant_b])
    assert again != keys and Deployment.objects.filter(provider="simulator").count() == 4

    call_command("demo_traffic", url=live_gateway.url, rate=20, duration=2, stream_share=0.5)
    rows = usage_rows()
    assert {r.tenant_id for r in rows} == {"tenant-a", "tenant-b"}
    assert all(r.status == "success" for r in rows)
    truncate_usage()
