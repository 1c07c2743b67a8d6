"""Provider adapters against real upstream HTTP servers: the simulator (both APIs) and a loopback capture server."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from aiohttp import web

from apps.gateway.providers import ChatRequest, ProviderError, get_provider, provider_kinds
from apps.gateway.providers.anthropic import split_messages
from apps.gateway.providers.http import close_session, get_session
from apps.gateway.router import DeploymentSnapshot
from apps.regions.models import ProviderKind
from bench.simulator import SimulatorProcess, key_fingerprint

PROMPT = "Name three rivers that cross more than one country."
SYSTEM = "Answer in one line."


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="provider-sim", output_tokens=12) as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_sim(request):
    if "sim" in request.fixturenames:
        simulator = request.getfixturevalue("sim")
        simulator.reset()
        simulator.clear_requests()
    yield


def deployment(base_url: str, *, provider: str = "simulator", api_key: str | None = "sk-upstream-secret-1",
               timeout: float = 5.0, headers: dict | None = None, upstream_model: str = "sim-small"):
    return DeploymentSnapshot(
        id="00000000-0000-0000-0000-000000000001", name="test", model="public-model", provider=provider,
        upstream_model=upstream_model, base_url=base_url, api_key=api_key,
        extra_headers=MappingProxyType(headers or {}), region_id="us-east", region_group="us", tenant_id=None,
        priority=100, timeout_seconds=timeout,
    )


def chat(**overrides) -> ChatRequest:
    fields = {
        "model": "public-model",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "request_id": "req-123",
        "tenant_id": "tenant-a",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    fields.update(overrides)
    return ChatRequest(**fields)


def run(coro):
    async def main():
        try:
            return await coro
        finally:
            await close_session()

    return asyncio.run(main())


async def collect(iterator):
    return [delta async for delta in iterator]


def expected_prompt_tokens(*texts: str) -> int:
    return max(1, math.ceil(len("".join(texts)) / 4))


def test_every_provider_kind_a_deployment_can_name_has_a_registered_adapter():
    assert {kind for kind, _ in provider_kinds()} >= set(ProviderKind.values)
    for kind in ProviderKind.values:
        assert get_provider(kind).kind == kind


def test_an_unknown_provider_kind_is_a_clear_lookup_error():
    with pytest.raises(LookupError, match="no provider of kind 'nope'"):
        get_provider("nope")


def test_openai_compatible_completion_returns_text_usage_and_sends_the_key_and_trace_headers(sim):
    result = run(get_provider("openai").complete(deployment(sim.url + "/v1", provider="openai"), chat()))
    assert result.completion_tokens == 12
    assert result.prompt_tokens == expected_prompt_tokens(SYSTEM, PROMPT)
    assert len(result.text.split()) == 12
    assert result.finish_reason == "stop"
    assert result.upstream_model == "sim-small"
    [logged] = sim.requests()
    assert logged["path"] == "/v1/chat/completions"
    assert logged["model"] == "sim-small"
    assert logged["key_fingerprint"] == key_fingerprint("sk-upstream-secret-1")
    assert logged["headers"]["x-request-id"] == "req-123"
    assert logged["headers"]["traceparent"].startswith("00-0af7651916cd43dd")


def test_openai_compatible_stream_yields_the_same_text_and_ends_with_usage(sim):
    provider = get_provider("openai")
    target = deployment(sim.url + "/v1", provider="openai")
    whole = run(provider.complete(target, chat()))
    deltas = run(collect(provider.stream(target, chat(stream=True))))
    assert "".join(d.text for d in deltas) == whole.text
    last = deltas[-1]
    assert last.finish_reason == "stop"
    assert (last.prompt_tokens, last.completion_tokens) == (whole.prompt_tokens, 12)
    assert all(d.text for d in deltas[:-1])
    assert sim.requests()[-1]["stream"] is True


def test_max_tokens_truncates_and_reports_length_as_the_finish_reason(sim):
    result = run(get_provider("simulator").complete(deployment(sim.url), chat(max_tokens=3)))
    assert result.completion_tokens == 3
    assert result.finish_reason == "length"


def test_anthropic_completion_lifts_the_system_prompt_and_sends_its_own_headers(sim):
    result = run(get_provider("anthropic").complete(deployment(sim.url, provider="anthropic"), chat()))
    assert result.completion_tokens == 12
    assert result.prompt_tokens == expected_prompt_tokens(SYSTEM, PROMPT)
    assert result.finish_reason == "stop"
    [logged] = sim.requests()
    assert logged["path"] == "/v1/messages"
    assert logged["api"] == "anthropic"
    assert logged["key_fingerprint"] == key_fingerprint("sk-upstream-secret-1")
    assert logged["headers"]["anthropic-version"] == "2023-06-01"


def test_anthropic_streaming_events_become_deltas_with_usage_on_the_last(sim):
    provider = get_provider("anthropic")
    target = deployment(sim.url + "/v1", provider="anthropic")
    whole = run(provider.complete(target, chat()))
    deltas = run(collect(provider.stream(target, chat(stream=True, max_tokens=5))))
    text = "".join(d.text for d in deltas)
    assert text.split() == whole.text.split()[:5]
    last = deltas[-1]
    assert last.finish_reason == "length"
    assert last.prompt_tokens == expected_prompt_tokens(SYSTEM, PROMPT)
    assert last.completion_tokens == 5


def test_system_and_developer_messages_are_joined_into_the_anthropic_system_prompt():
    system, messages = split_messages([
        {"role": "system", "content": "One."},
        {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ])
    assert system == "One.\n\nTwo."
    assert [m["role"] for m in messages] == ["user", "assistant"]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_an_upstream_500_is_a_retryable_server_error(sim, kind):
    sim.control(error_rate=1.0, error_status=500)
    with pytest.raises(ProviderError) as caught:
        run(get_provider(kind).complete(deployment(sim.url + "/v1", provider=kind), chat()))
    assert caught.value.kind == "server_error"
    assert caught.value.status == 500
    assert caught.value.retryable
    assert "simulated" in caught.value.message


def test_an_upstream_429_is_rate_limited_with_its_retry_after(sim):
    sim.control(error_rate=1.0, error_status=429, retry_after_s=7)
    with pytest.raises(ProviderError) as caught:
        run(get_provider("simulator").complete(deployment(sim.url), chat()))
    assert caught.value.kind == "rate_limited"
    assert caught.value.retry_after == 7
    assert caught.value.retryable


def test_a_stream_that_fails_before_its_first_byte_raises_from_the_first_iteration(sim):
    sim.control(error_rate=1.0, error_status=503)

    async def first():
        stream = get_provider("simulator").stream(deployment(sim.url), chat(stream=True))
        try:
            return await stream.__anext__()
        finally:
            await stream.aclose()

    with pytest.raises(ProviderError) as caught:
        run(first())
    assert caught.value.kind == "server_error"


def test_rejected_credentials_are_an_auth_error_that_is_not_retryable(sim):
    sim.control(require_key="sk-the-right-one")
    for kind in ("openai", "anthropic"):
        with pytest.raises(ProviderError) as caught:
            run(get_provider(kind).complete(deployment(sim.url + "/v1", provider=kind), chat()))
        assert caught.value.kind == "auth"
        assert not caught.value.retryable
    sim.control(require_key="sk-upstream-secret-1")
    assert run(get_provider("openai").complete(deployment(sim.url + "/v1", provider="openai"), chat())).text


def test_an_unknown_upstream_model_is_a_client_error(sim):
    with pytest.raises(ProviderError) as caught:
        run(get_provider("simulator").complete(deployment(sim.url, upstream_model="no-such-model"), chat()))
    assert caught.value.kind == "client_error"
    assert caught.value.status == 404
    assert not caught.value.retryable


def test_a_slow_upstream_is_a_timeout_after_the_deployments_limit(sim):
    sim.control(latency_ms=2500)
    with pytest.raises(ProviderError) as caught:
        run(get_provider("simulator").complete(deployment(sim.url, timeout=1), chat()))
    assert caught.value.kind == "timeout"
    assert caught.value.retryable


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_a_retryable_connection_error():
    with pytest.raises(ProviderError) as caught:
        run(get_provider("openai").complete(deployment(f"http://127.0.0.1:{closed_port()}/v1", provider="openai"), chat()))
    assert caught.value.kind == "connection"
    assert caught.value.retryable


def test_probe_reports_a_healthy_and_a_down_upstream(sim):
    ok = run(get_provider("simulator").probe(deployment(sim.url)))
    assert ok.ok and ok.latency_ms >= 0
    assert run(get_provider("openai").probe(deployment(sim.url + "/v1", provider="openai"))).ok
    sim.control(down=True)
    down = run(get_provider("simulator").probe(deployment(sim.url)))
    assert not down.ok
    assert "503" in down.detail


def test_one_upstream_session_is_shared_within_an_event_loop():
    async def sessions():
        return get_session(), get_session()

    first, second = run(sessions())
    assert first is second


@pytest.fixture
def capture_server():
    """A loopback server that records what an Azure-style deployment sends and answers like OpenAI."""
    seen: list[dict] = []
    ready = threading.Event()
    state: dict = {}

    async def handler(request: web.Request):
        seen.append({"path": request.path, "query": dict(request.query), "headers": dict(request.headers),
                     "body": await request.json()})
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": "gpt-4o-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        })

    def serve():
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state["port"] = site._server.sockets[0].getsockname()[1]
        state["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    yield f"http://127.0.0.1:{state['port']}", seen
    state["loop"].call_soon_threadsafe(state["loop"].stop)
    thread.join(5)


def test_an_azure_style_deployment_keeps_its_api_version_and_sends_the_key_in_the_api_key_header(capture_server):
    url, seen = capture_server
    target = deployment(
        f"{url}/openai/deployments/gpt4o?api-version=2024-10-21", provider="openai", upstream_model="gpt-4o",
        headers={"api-key": "{api_key}"},
    )
    result = run(get_provider("openai").complete(target, chat(temperature=0.2, extra={"top_p": 0.9})))
    assert result.text == "hi"
    [call] = seen
    assert call["path"] == "/openai/deployments/gpt4o/chat/completions"
    assert call["query"] == {"api-version": "2024-10-21"}
    assert call["headers"]["api-key"] == "sk-upstream-secret-1"
    assert "Authorization" not in call["headers"]
    assert call["body"]["temperature"] == 0.2
    assert call["body"]["top_p"] == 0.9
    assert call["body"]["model"] == "gpt-4o"


def test_a_vendor_deployment_is_not_told_the_tenant_but_the_simulator_is(capture_server, sim):
    url, seen = capture_server
    run(get_provider("openai").complete(deployment(url + "/v1", provider="openai"), chat()))
    assert "X-Switchyard-Tenant" not in seen[0]["headers"]
    assert seen[0]["headers"]["Authorization"] == "Bearer sk-upstream-secret-1"
    run(get_provider("simulator").complete(deployment(sim.url), chat()))
    assert sim.requests()[-1]["headers"]["x-switchyard-tenant"] == "tenant-a"
