"""Redis unreachable: fail closed with a clear 503 by default; a tenant in the degraded mode keeps
being served (keys and tenants read from Postgres) and its usage records go straight to Postgres."""

from __future__ import annotations

import httpx
import pytest
from django.db import connection

from tests.gateway.live import LiveGateway, free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway_without_redis(world):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with LiveGateway(database_name=connection.settings_dict["NAME"], env={"REDIS_URL": closed}) as gateway:
        yield gateway


def post(gateway, key):
    return httpx.post(gateway.url + "/api/v1/generate", json={"model": "sim-small", "prompt": "hello"},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_redis_down_fails_closed_with_503_and_a_clear_message(gateway_without_redis, world):
    response = post(gateway_without_redis, world.key)
    assert response.status_code == 503
    assert "Redis" in response.json()["error"]["message"]
    assert response.headers["Retry-After"]


def test_redis_down_with_the_degraded_mode_still_serves_and_records(gateway_without_redis, world):
    from apps.gateway.models import UsageRecord

    world.tenant.redis_outage_mode = "degraded"
    world.tenant.save()
    responses = [post(gateway_without_redis, world.key) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200], responses[0].text
    ids = {r.json()["request_id"] for r in responses}
    assert set(UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", flat=True)) == ids


def test_a_revoked_key_stays_refused_while_redis_is_down(gateway_without_redis, world, personas):
    from apps.gateway import services

    world.tenant.redis_outage_mode = "degraded"
    world.tenant.save()
    services.revoke_api_key(actor=personas.a_admin, api_key=world.key_row)
    assert post(gateway_without_redis, world.key).status_code == 401
