"""POST /api/v1/generate and GET /api/v1/models against a live Switchyard and real simulators."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest

from tests.gateway.conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


def post(gateway, key, body, **headers):
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gateway.url + "/api/v1/generate", json=body, headers={**auth, **headers}, timeout=20)


def test_generate_returns_output_usage_latency_deployment_region_and_request_id(live_gateway, world, sim_us):
    response = post(live_gateway, world.key, {"prompt": "Say hello to the gateway", "model": "sim-small", "max_tokens": 50})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"]
    assert body["model"] == "sim-small"
    assert body["usage"]["completion_tokens"] == 8
    assert body["usage"]["prompt_tokens"] == 6  # ceil(24 chars / 4), counted by the simulator
    assert body["usage"]["total_tokens"] == 14
    assert body["deployment"]["name"] == "sim-small@us-east"
    assert body["region"] == "us-east"
    assert body["latency_ms"] > 0
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["X-RateLimit-Limit-Requests"] == "600"
    assert sim_us.requests()[-1]["path"] == "/v1/chat/completions"


def test_every_request_writes_one_priced_usage_record_and_an_audit_event(live_gateway, world, personas):
    from apps.audit.models import AuditEvent

    response = post(live_gateway, world.key, {"prompt": "Price me", "model": "sim-small",
                                              "metadata": {"team": "search"}})
    assert response.status_code == 200
    request_id = response.json()["request_id"]
    rows = usage_rows(request_id=request_id)
    assert len(rows) == 1
    row = rows[0]
    assert row.tenant_id == "tenant-a"
    assert row.api_key_id == world.key_row.pk
    assert row.user_id == personas.a_member.pk
    assert row.region_id == "us-east"
    assert row.status == "success" and row.status_code == 200
    assert (row.prompt_tokens, row.completion_tokens) == (2, 8)
    # 0.5 per 1k in, 1.5 per 1k out.
    assert row.cost == Decimal("0.5") * 2 / 1000 + Decimal("1.5") * 8 / 1000
    assert row.unpriced is False
    assert row.tags == {"team": "search"}
    assert row.ttft_ms is not None and row.latency_ms >= row.ttft_ms
    events = AuditEvent.objects.filter(action="gateway.generate", tenant_id="tenant-a")
    assert [e.metadata["request_id"] for e in events] == [request_id]
    assert "Price me" not in str(events[0].metadata)


def test_an_unpriced_model_is_flagged_with_no_cost(live_gateway, world):
    response = post(live_gateway, world.key, {"prompt": "no price", "model": "sim-large"})
    assert response.status_code == 200
    row = usage_rows(request_id=response.json()["request_id"])[0]
    assert row.cost is None and row.unpriced is True


def test_streamed_generate_sends_deltas_then_a_done_event_with_usage(live_gateway, world):
    with httpx.stream("POST", live_gateway.url + "/api/v1/generate", headers={"Authorization": f"Bearer {world.key}"},
                      json={"prompt": "stream please", "model": "sim-small", "stream": True}, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    import json

    payloads = [json.loads(e[6:]) for e in events]
    assert [p["type"] for p in payloads][-1] == "done"
    assert "".join(p.get("text", "") for p in payloads if p["type"] == "delta")
    assert payloads[-1]["usage"]["completion_tokens"] == 8
    row = usage_rows(request_id=payloads[-1]["request_id"])[0]
    assert row.stream is True and row.completion_tokens == 8


def test_models_lists_what_the_tenant_may_use_and_may_be_cached_for_300_seconds(live_gateway, world):
    response = httpx.get(live_gateway.url + "/api/v1/models", headers={"Authorization": f"Bearer {world.key}"})
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["sim-large", "sim-small"]
    assert "max-age=300" in response.headers["Cache-Control"]

    world.tenant.allowed_models = ["sim-small"]
    world.tenant.save()
    response = httpx.get(live_gateway.url + "/api/v1/models", headers={"Authorization": f"Bearer {world.key}"})
    assert [m["id"] for m in response.json()["data"]] == ["sim-small"]


# --- errors: one JSON shape, the right status -----------------------------------------------------

def assert_error(response, status, *, field=None, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field:
        assert field in error["fields"], error
    if code:
        assert error["code"] == code, error
    return error


def test_missing_or_unknown_key_is_401(live_gateway, world):
    assert_error(post(live_gateway, None, {"prompt": "x", "model": "sim-small"}), 401)
    assert_error(post(live_gateway, "sy_live_deadbeef_nope", {"prompt": "x", "model": "sim-small"}), 401)


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "x"}, "model"),
    ({"model": "sim-small"}, "prompt"),
    ({"model": "sim-small", "prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"model": "sim-small", "prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ({"model": "sim-small", "prompt": "x", "temperature": 3}, "temperature"),
    ({"model": "sim-small", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": "sim-small", "prompt": "x", "metadata": {"department": "nope"}}, "metadata.department"),
    ({"model": "sim-small", "prompt": "x", "stream": "yes"}, "stream"),
])
def test_bad_input_is_400_naming_the_field(live_gateway, world, body, field):
    assert_error(post(live_gateway, world.key, body), 400, field=field)


def test_invalid_json_is_400(live_gateway, world):
    response = httpx.post(live_gateway.url + "/api/v1/generate", content=b"{nope",
                          headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"})
    assert_error(response, 400, code="invalid_json")


def test_a_model_outside_the_allow_list_is_403_and_an_unknown_model_404(live_gateway, world):
    world.tenant.allowed_models = ["sim-large"]
    world.tenant.save()
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}), 403, code="model_not_allowed")
    world.tenant.allowed_models = []
    world.tenant.save()
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "no-such-model"}), 404, code="model_not_found")


def test_a_prompt_over_the_size_limit_is_413(live_gateway, world):
    assert_error(post(live_gateway, world.key, {"prompt": "x" * 200_001, "model": "sim-small"}), 413)


def test_a_suspended_tenant_is_403(live_gateway, world):
    world.tenant.status = "suspended"
    world.tenant.save()
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}), 403, code="tenant_suspended")


def test_quota_refusal_is_429_with_retry_after_and_rate_limit_headers(live_gateway, world):
    world.tenant.requests_per_minute = 2
    world.tenant.save()
    for _ in range(2):
        assert post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}).status_code == 200
    response = post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"})
    assert_error(response, 429, code="requests_per_minute")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Limit-Requests"] == "2"
    assert response.headers["X-RateLimit-Remaining-Requests"] == "0"
    rows = usage_rows(status="rate_limited")
    assert len(rows) == 1 and rows[0].status_code == 429


def test_a_per_key_limit_refuses_that_key_only(live_gateway, world, personas):
    from apps.gateway import services

    services.update_api_key(actor=personas.a_admin, api_key=world.key_row, requests_per_minute=1)
    _, second = services.create_api_key(actor=personas.a_admin, tenant=world.tenant, name="second")
    assert post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}).status_code == 200
    response = post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"})
    assert_error(response, 429)
    assert "API key" in response.json()["error"]["message"]
    assert post(live_gateway, second, {"prompt": "x", "model": "sim-small"}).status_code == 200


def test_no_enabled_deployment_is_503(live_gateway, world):
    from apps.regions.models import Deployment

    for deployment in Deployment.objects.filter(model="sim-small"):
        deployment.enabled = False
        deployment.save()
    time.sleep(0.1)
    response = post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"})
    assert response.status_code in (404, 503), response.text


def test_all_upstreams_failing_is_502(live_gateway, world, sim_us, sim_eu):
    for sim in (sim_us, sim_eu):
        sim.control(error_rate=1.0, error_status=500)
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}), 502)


def test_all_upstreams_timing_out_is_504(live_gateway, world, sim_us, sim_eu):
    from apps.regions.models import Deployment

    for deployment in Deployment.objects.filter(model="sim-small"):
        deployment.timeout_seconds = 1
        deployment.save()
    for sim in (sim_us, sim_eu):
        sim.control(latency_ms=3000)
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}), 504)


def test_a_revoked_key_stops_working_at_once(live_gateway, world, personas):
    from apps.gateway import services

    assert post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}).status_code == 200
    services.revoke_api_key(actor=personas.a_admin, api_key=world.key_row)
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}), 401)


def test_an_expired_key_is_401(live_gateway, world, personas):
    from datetime import timedelta

    from django.utils import timezone

    from apps.gateway.models import ApiKey

    ApiKey.objects.filter(pk=world.key_row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    from apps.gateway import context

    context.forget_key(world.key_row.hashed_key, revoked=False)
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small"}), 401, code="expired_api_key")


# --- platform service keys ------------------------------------------------------------------------

def test_a_platform_service_key_acts_for_the_tenant_and_user_it_names(live_gateway, world, personas):
    from apps.gateway import services

    _, service = services.create_platform_service_key(actor=personas.platform_admin, name="seed")
    response = post(live_gateway, service, {"prompt": "x", "model": "sim-small", "tenantId": "tenant-a",
                                            "userId": personas.a_member.pk})
    assert response.status_code == 200, response.text
    row = usage_rows(request_id=response.json()["request_id"])[0]
    assert (row.tenant_id, row.user_id) == ("tenant-a", personas.a_member.pk)

    assert_error(post(live_gateway, service, {"prompt": "x", "model": "sim-small"}), 400, field="tenant_id")
    assert_error(post(live_gateway, service, {"prompt": "x", "model": "sim-small", "tenant_id": "tenant-a",
                                              "user_id": personas.b_admin.pk}), 400, field="user_id")
    assert_error(post(live_gateway, service, {"prompt": "x", "model": "sim-small", "tenant_id": "nope"}), 404)


def test_a_tenant_key_naming_another_tenant_is_403(live_gateway, world):
    assert_error(post(live_gateway, world.key, {"prompt": "x", "model": "sim-small", "tenant_id": "tenant-b"}), 403,
                 code="tenant_mismatch")


def test_the_data_plane_also_works_through_the_plain_django_asgi_application(world):
    """console.asgi runs every request through the console's middleware; the answers are the same."""
    from django.db import connection

    from tests.gateway.live import LiveGateway

    with LiveGateway(database_name=connection.settings_dict["NAME"], app="console.asgi:application") as gateway:
        response = post(gateway, world.key, {"prompt": "plain django", "model": "sim-small"})
        assert response.status_code == 200, response.text
        assert_error(post(gateway, world.key, {"model": "sim-small"}), 400, field="prompt")
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                          json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                          timeout=20) as streamed:
            lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"


def test_content_is_stored_encrypted_only_when_the_tenant_keeps_content(live_gateway, world):
    from apps.gateway.models import StoredContent

    assert post(live_gateway, world.key, {"prompt": "not kept", "model": "sim-small"}).status_code == 200
    assert not StoredContent.objects.exists()
    world.tenant.store_content = True
    world.tenant.encrypt_content = True
    world.tenant.save()
    response = post(live_gateway, world.key, {"prompt": "keep this secret prompt", "model": "sim-small"})
    row = StoredContent.objects.get(request_id=response.json()["request_id"])
    assert row.encrypted and "keep this secret prompt" in row.prompt_text
    assert row.response_text == response.json()["output"]
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT prompt FROM gateway_storedcontent WHERE id = %s", [row.pk])
        assert "secret" not in cursor.fetchone()[0]


def test_an_access_token_of_a_member_may_generate_for_that_members_tenant(live_gateway, world, personas):
    from apps.accounts.tokens import issue_for_user

    token = issue_for_user(user=personas.a_member).access_token
    response = post(live_gateway, token, {"prompt": "by token", "model": "sim-small"})
    assert response.status_code == 200, response.text
    row = usage_rows(request_id=response.json()["request_id"])[0]
    assert (row.tenant_id, row.user_id, row.api_key_id) == ("tenant-a", personas.a_member.pk, None)
    viewer = issue_for_user(user=personas.a_viewer).access_token
    assert_error(post(live_gateway, viewer, {"prompt": "x", "model": "sim-small"}), 400, field="tenant_id")
    outsider = issue_for_user(user=personas.b_admin).access_token
    assert_error(post(live_gateway, outsider, {"prompt": "x", "model": "sim-small", "tenant_id": "tenant-a"}), 403)


def test_metrics_count_requests_by_tenant_and_model(live_gateway, world):
    assert post(live_gateway, world.key, {"prompt": "count me", "model": "sim-small"}).status_code == 200
    text = httpx.get(live_gateway.url + "/metrics").text
    assert 'tenant="tenant-a"' in text and 'model="sim-small"' in text
