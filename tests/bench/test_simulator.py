"""Tests for the upstream model simulator, driven over real HTTP with the openai client and httpx."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from bench.simulator import (
    LOREM_WORDS,
    SimulatorConfig,
    SimulatorProcess,
    SimulatorThread,
    key_fingerprint,
    simulator_state,
    start_simulator,
)

PROMPT = "Say something about load balancing across regions."
PROMPT_TOKENS = math.ceil(len(PROMPT) / 4)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="test-sim") as process:
        yield process
    # Disconnects, cancellations and injected errors must not leave tracebacks behind.
    assert process.stderr_text() == ""


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    # Tests share one simulator process; each starts from the start-up behaviour and an empty log.
    if "sim" in request.fixturenames:
        process: SimulatorProcess = request.getfixturevalue("sim")
        process.reset()
        process.clear_requests()
        process.reset_stats()


def openai_client(sim: SimulatorProcess | SimulatorThread, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("api_key", "sk-test")
    return openai.OpenAI(base_url=sim.url + "/v1", max_retries=0, **kwargs)


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    kwargs.setdefault("model", "sim-small")
    kwargs.setdefault("messages", [{"role": "user", "content": PROMPT}])
    return client.chat.completions.create(**kwargs)


def anthropic_body(**kwargs: Any) -> dict[str, Any]:
    body = {"model": "claude-3-5-haiku", "max_tokens": 1024, "messages": [{"role": "user", "content": PROMPT}]}
    body.update(kwargs)
    return body


ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


def sse_events(lines: Iterator[str]) -> list[tuple[str, dict[str, Any]]]:
    """Parse an Anthropic event stream into (event name, data) pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, orjson.loads(line[6:])))
    return events


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# --- OpenAI API -----------------------------------------------------------------------------------------------


def test_health_answers_with_name_header(sim: SimulatorProcess) -> None:
    response = httpx.get(sim.url + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "name": "test-sim"}
    assert response.headers["X-Simulator-Name"] == "test-sim"


def test_openai_non_streaming_text_and_usage(sim: SimulatorProcess) -> None:
    client = openai_client(sim)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert raw.headers["x-simulator-name"] == "test-sim"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    words = choice.message.content.split(" ")
    assert len(words) == 16
    assert set(words) <= set(LOREM_WORDS)
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == PROMPT_TOKENS + 16
    # Same prompt, same answer: tests may compare text across calls and across streaming modes.
    assert chat(client).choices[0].message.content == choice.message.content


def test_openai_prompt_tokens_count_all_message_text(sim: SimulatorProcess) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "First part."}, {"type": "text", "text": " Second."}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "x"},
    ]
    chars = len("You are terse.") + len("First part.") + len(" Second.") + len("ok") + len("x")
    completion = chat(openai_client(sim), messages=messages)
    assert completion.usage.prompt_tokens == math.ceil(chars / 4)
    tiny = chat(openai_client(sim), messages=[{"role": "user", "content": ""}])
    assert tiny.usage.prompt_tokens == 1


def test_openai_max_tokens_below_output_tokens_truncates(sim: SimulatorProcess) -> None:
    client = openai_client(sim)
    completion = chat(client, max_tokens=5)
    assert completion.usage.completion_tokens == 5
    assert len(completion.choices[0].message.content.split()) == 5
    assert completion.choices[0].finish_reason == "length"
    roomy = chat(client, max_completion_tokens=500)
    assert roomy.usage.completion_tokens == 16
    assert roomy.choices[0].finish_reason == "stop"


def test_openai_streaming_with_usage(sim: SimulatorProcess) -> None:
    client = openai_client(sim)
    sim.control(output_tokens=7)
    expected = chat(client).choices[0].message.content
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 7
    assert "".join(c.choices[0].delta.content for c in content_chunks) == expected
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == PROMPT_TOKENS
    assert usage_chunk.usage.completion_tokens == 7
    assert usage_chunk.usage.total_tokens == PROMPT_TOKENS + 7
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_streaming_wire_format_ends_with_done(sim: SimulatorProcess) -> None:
    body = {"model": "sim-small", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    with httpx.stream("POST", sim.url + "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [orjson.loads(line[6:]) for line in lines[:-1]]
    # Without include_usage there is no usage key and no usage-only chunk.
    assert all("usage" not in p for p in payloads)
    assert all(len(p["choices"]) == 1 for p in payloads)


def test_token_latency_paces_streamed_chunks(sim: SimulatorProcess) -> None:
    sim.control(latency_ms=100, token_latency_ms=50, output_tokens=5)
    client = openai_client(sim)
    started = time.monotonic()
    arrivals = []
    for chunk in chat(client, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 5
    assert arrivals[0] >= 0.1
    assert arrivals[-1] - arrivals[0] >= 4 * 0.05 * 0.9
    # Non-streaming waits for the whole generation: latency + 4 gaps.
    started = time.monotonic()
    chat(client)
    assert time.monotonic() - started >= 0.3 * 0.9


def test_models_list_in_both_shapes(sim: SimulatorProcess) -> None:
    ids = [m.id for m in openai_client(sim).models.list()]
    assert ids == ["sim-small", "sim-large", "gpt-4o-mini", "claude-3-5-haiku"]
    anthropic = httpx.get(sim.url + "/v1/models", headers=ANTHROPIC_HEADERS).json()
    assert [m["id"] for m in anthropic["data"]] == ids
    assert anthropic["has_more"] is False
    assert all(m["type"] == "model" for m in anthropic["data"])


def test_unknown_model_is_404_in_provider_shape(sim: SimulatorProcess) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        chat(openai_client(sim), model="gpt-99")
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    response = httpx.post(sim.url + "/v1/messages", json=anthropic_body(model="claude-99"), headers=ANTHROPIC_HEADERS)
    assert response.status_code == 404
    assert response.json() == {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-99"}}


def test_models_can_be_changed_at_runtime(sim: SimulatorProcess) -> None:
    sim.control(models=["only-model"])
    assert chat(openai_client(sim), model="only-model").model == "only-model"
    with pytest.raises(openai.NotFoundError):
        chat(openai_client(sim), model="sim-small")


def test_malformed_requests_get_400(sim: SimulatorProcess) -> None:
    url = sim.url + "/v1/chat/completions"
    not_json = httpx.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    no_messages = httpx.post(url, json={"model": "sim-small"})
    assert no_messages.status_code == 400
    anthropic = httpx.post(sim.url + "/v1/messages", json={"messages": []}, headers=ANTHROPIC_HEADERS)
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"


# --- Anthropic API --------------------------------------------------------------------------------------------


def test_anthropic_non_streaming(sim: SimulatorProcess) -> None:
    body = anthropic_body(system="Be brief.")
    response = httpx.post(sim.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200
    assert response.headers["x-simulator-name"] == "test-sim"
    message = response.json()
    assert message["id"].startswith("msg_")
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == "claude-3-5-haiku"
    assert message["stop_reason"] == "end_turn"
    assert len(message["content"]) == 1
    assert message["content"][0]["type"] == "text"
    assert len(message["content"][0]["text"].split()) == 16
    # The system prompt counts towards input tokens.
    assert message["usage"] == {"input_tokens": math.ceil(len("Be brief." + PROMPT) / 4), "output_tokens": 16}


def test_anthropic_streaming_event_sequence(sim: SimulatorProcess) -> None:
    body = anthropic_body(stream=True, max_tokens=6)
    with httpx.stream("POST", sim.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 6,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["role"] == "assistant"
    assert start["content"] == []
    assert start["usage"]["input_tokens"] == PROMPT_TOKENS
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    text = "".join(d["text"] for d in deltas)
    assert len(text.split()) == 6
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "max_tokens"
    assert message_delta["usage"] == {"output_tokens": 6}
    # Streaming and non-streaming agree on the text.
    plain = httpx.post(sim.url + "/v1/messages", json=anthropic_body(max_tokens=6), headers=ANTHROPIC_HEADERS)
    assert plain.json()["content"][0]["text"] == text


# --- Failure modes --------------------------------------------------------------------------------------------


def test_error_rate_one_with_429_sends_retry_after(sim: SimulatorProcess) -> None:
    sim.control(error_rate=1, error_status=429, retry_after_s=7)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(openai_client(sim))
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    response = httpx.post(sim.url + "/v1/messages", json=anthropic_body(), headers=ANTHROPIC_HEADERS)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_error_rate_one_with_500(sim: SimulatorProcess) -> None:
    sim.control(error_rate=1.0)
    with pytest.raises(openai.InternalServerError) as caught:
        chat(openai_client(sim))
    assert caught.value.status_code == 500
    assert "retry-after" not in caught.value.response.headers
    response = httpx.post(sim.url + "/v1/messages", json=anthropic_body(stream=True), headers=ANTHROPIC_HEADERS)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"


def test_error_rate_fraction(sim: SimulatorProcess) -> None:
    sim.control(error_rate=0.5, error_status=503)
    with httpx.Client(base_url=sim.url) as client:
        statuses = [
            client.post(
                "/v1/chat/completions", json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
            ).status_code
            for _ in range(200)
        ]
    assert set(statuses) == {200, 503}
    # 200 draws at p=0.5: sd is about 7, so 60..140 fails by chance essentially never.
    assert 60 <= statuses.count(503) <= 140
    assert sim.stats()["by_status"] == {"200": statuses.count(200), "503": statuses.count(503)}


def test_down_answers_503_everywhere(sim: SimulatorProcess) -> None:
    sim.control(down=True)
    assert sim.health_status() == 503
    assert httpx.get(sim.url + "/health").json() == {"status": "down", "name": "test-sim"}
    with pytest.raises(openai.InternalServerError) as caught:
        chat(openai_client(sim))
    assert caught.value.status_code == 503
    assert httpx.get(sim.url + "/v1/models").status_code == 503
    response = httpx.post(sim.url + "/v1/messages", json=anthropic_body(), headers=ANTHROPIC_HEADERS)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "overloaded_error"
    sim.control(down=False)
    assert sim.health_status() == 200
    assert chat(openai_client(sim)).usage.completion_tokens == 16


def test_hang_times_out_the_client_until_released(sim: SimulatorProcess) -> None:
    sim.control(hang=True)
    # /health keeps answering: a hung upstream that still passes probes is the case to test for.
    assert sim.health_status() == 200
    with pytest.raises(openai.APITimeoutError):
        chat(openai_client(sim, timeout=0.3))
    # The client hung up, so the simulator frees the slot and logs it as 499.
    wait_for(lambda: sim.stats()["in_flight"] == 0)
    assert sim.stats()["hanging"] == 0
    assert [e["status"] for e in sim.requests()] == [499]

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        parked = pool.submit(chat, openai_client(sim, timeout=10))
        wait_for(lambda: sim.stats()["hanging"] == 1)
        time.sleep(0.1)
        assert not parked.done()
        sim.control(hang=False)
        assert parked.result(timeout=5).usage.completion_tokens == 16


def test_latency_delays_the_answer(sim: SimulatorProcess) -> None:
    sim.control(latency_ms=250)
    started = time.monotonic()
    chat(openai_client(sim))
    assert time.monotonic() - started >= 0.25
    with pytest.raises(openai.APITimeoutError):
        chat(openai_client(sim, timeout=0.1))


def test_concurrency_is_counted(sim: SimulatorProcess) -> None:
    sim.control(latency_ms=800)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=sim.url, limits=httpx.Limits(max_connections=100)) as client:
            body = {"model": "sim-large", "messages": [{"role": "user", "content": "hi"}]}
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(40)))
            return [r.status_code for r in responses]

    started = time.monotonic()
    assert asyncio.run(burst()) == [200] * 40
    # Served concurrently, not one after another.
    assert time.monotonic() - started < 3.0
    stats = sim.stats()
    assert stats["max_in_flight"] == 40
    assert stats["in_flight"] == 0
    assert stats["total"] == 40


# --- Control, log, stats --------------------------------------------------------------------------------------


def test_control_reads_updates_validates_and_resets(sim: SimulatorProcess) -> None:
    initial = sim.get_control()
    assert initial["name"] == "test-sim"
    assert initial["output_tokens"] == 16
    assert initial["models"] == ["sim-small", "sim-large", "gpt-4o-mini", "claude-3-5-haiku"]
    updated = sim.control(name="us-east-sim", output_tokens=3, jitter_ms=5)
    assert updated == {**initial, "name": "us-east-sim", "output_tokens": 3, "jitter_ms": 5}
    assert sim.get_control() == updated
    assert httpx.get(sim.url + "/health").headers["x-simulator-name"] == "us-east-sim"
    assert chat(openai_client(sim)).usage.completion_tokens == 3

    for bad in (
        {"error_rate": 1.5},
        {"error_status": 200},
        {"latency_ms": -1},
        {"down": "yes"},
        {"models": []},
        {"output_tokens": 0},
        {"request_log_size": 5},
        {"bogus": 1},
    ):
        response = httpx.post(sim.url + "/_control", json=bad)
        assert response.status_code == 400, bad
        assert "error" in response.json()
    assert httpx.post(sim.url + "/_control", content=b"[1,").status_code == 400
    assert sim.get_control() == updated
    assert sim.reset() == initial


def test_request_log_records_headers_and_reads_incrementally(sim: SimulatorProcess) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    client = openai_client(
        sim,
        api_key="sk-tenant-a",
        default_headers={"X-Switchyard-Tenant": "tenant-a", "traceparent": traceparent, "X-Other": "not logged"},
    )
    chat(client)
    list(chat(client, stream=True, model="sim-large"))
    httpx.post(
        sim.url + "/v1/messages", json=anthropic_body(), headers={**ANTHROPIC_HEADERS, "x-switchyard-tenant": "b"}
    )
    first = sim.requests()
    # Sequence numbers run for the life of the process (the fixture's clear does not rewind them).
    base = first[0]["seq"]
    assert [e["seq"] - base for e in first] == [0, 1, 2]
    assert [(e["path"], e["model"], e["stream"], e["status"]) for e in first] == [
        ("/v1/chat/completions", "sim-small", False, 200),
        ("/v1/chat/completions", "sim-large", True, 200),
        ("/v1/messages", "claude-3-5-haiku", False, 200),
    ]
    entry = first[0]
    assert entry["headers"]["x-switchyard-tenant"] == "tenant-a"
    assert entry["headers"]["traceparent"] == traceparent
    assert "x-other" not in entry["headers"]
    assert "authorization" not in entry["headers"]
    assert entry["key_fingerprint"] == key_fingerprint("sk-tenant-a")
    assert entry["prompt_tokens"] == PROMPT_TOKENS
    assert entry["completion_tokens"] == 16
    assert entry["method"] == "POST"
    assert entry["duration_ms"] >= 0
    assert abs(entry["time"] - time.time()) < 60
    assert first[2]["headers"]["anthropic-version"] == "2023-06-01"
    assert first[2]["key_fingerprint"] == key_fingerprint("sk-ant-test")

    # /health and control traffic are not logged; incremental reads return only newer entries.
    sim.health_status()
    assert sim.requests(since=base + 2) == []
    httpx.post(sim.url + "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    newer = sim.requests(since=base + 2)
    assert [(e["seq"] - base, e["status"], e["model"]) for e in newer] == [(3, 404, "nope")]
    assert [e["seq"] - base for e in sim.requests(since=base, limit=2)] == [1, 2]

    sim.clear_requests()
    assert sim.requests() == []
    chat(client)
    # Sequence numbers keep counting after a clear, so `since` cursors stay valid.
    assert [e["seq"] - base for e in sim.requests(since=base + 3)] == [4]
    assert httpx.get(sim.url + "/_requests?since=x").status_code == 400


def test_stats_count_by_status_and_reset(sim: SimulatorProcess) -> None:
    chat(openai_client(sim))
    httpx.post(sim.url + "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    sim.health_status()
    stats = sim.stats()
    assert stats["name"] == "test-sim"
    assert stats["total"] == 2
    assert stats["by_status"] == {"200": 1, "404": 1}
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 1
    assert stats["hanging"] == 0
    assert stats["health_checks"] == 1
    reset = sim.reset_stats()
    assert reset["total"] == 0
    assert reset["by_status"] == {}


# --- Auth -----------------------------------------------------------------------------------------------------


def test_require_key_rejects_other_keys_in_provider_shape() -> None:
    with SimulatorThread(name="keyed", require_key="sk-right") as sim:
        with pytest.raises(openai.AuthenticationError) as caught:
            chat(openai_client(sim, api_key="sk-wrong"))
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"
        assert chat(openai_client(sim, api_key="sk-right")).usage.completion_tokens == 16

        url = sim.url + "/v1/messages"
        missing = httpx.post(url, json=anthropic_body(), headers={"anthropic-version": "2023-06-01"})
        assert missing.status_code == 401
        assert missing.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }
        ok = httpx.post(
            url, json=anthropic_body(), headers={"x-api-key": "sk-right", "anthropic-version": "2023-06-01"}
        )
        assert ok.status_code == 200
        # Without a required key, a missing key and a missing anthropic-version are accepted.
        sim.control(require_key=None)
        assert httpx.post(url, json=anthropic_body()).status_code == 200
        assert (
            httpx.post(
                sim.url + "/v1/chat/completions",
                json={"model": "sim-small", "messages": [{"role": "user", "content": "x"}]},
            ).status_code
            == 200
        )


# --- Ways to run it -------------------------------------------------------------------------------------------


def test_start_simulator_in_process() -> None:
    async def scenario() -> None:
        runner, port = await start_simulator(SimulatorConfig(name="inproc", output_tokens=2))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                health = await client.get("/health")
                assert health.json() == {"status": "ok", "name": "inproc"}
                body = {"model": "sim-small", "messages": [{"role": "user", "content": "abcdefgh"}]}
                completion = (await client.post("/v1/chat/completions", json=body)).json()
                assert completion["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
            assert simulator_state(runner).total == 1
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_request_log_file_gets_json_lines(tmp_path: Path) -> None:
    log_path = tmp_path / "requests.jsonl"
    with SimulatorThread(name="filelog", request_log=str(log_path), request_log_size=2) as sim:
        for _ in range(3):
            chat(openai_client(sim, default_headers={"X-Switchyard-Tenant": "t1"}))
        # The in-memory log keeps the last N; the file keeps everything.
        assert [e["seq"] for e in sim.requests()] == [2, 3]
        lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3]
    assert all(e["headers"]["x-switchyard-tenant"] == "t1" and e["status"] == 200 for e in lines)


def test_process_options_port_and_sigterm(tmp_path: Path) -> None:
    # A long grace: stopping quickly below proves the parked request was released, not waited out.
    with SimulatorProcess(name="opts", output_tokens=4, down=True, models=["m1", "m2"], shutdown_timeout=10) as sim:
        assert sim.port > 0
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        assert sim.health_status() == 503
        control = sim.get_control()
        assert (control["output_tokens"], control["down"], control["models"]) == (4, True, ["m1", "m2"])
        sim.control(down=False)
        assert chat(openai_client(sim), model="m2").usage.completion_tokens == 4
        # SIGTERM stops it promptly: a request parked on hang is answered 503 rather than waited for.
        sim.control(hang=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            parked = pool.submit(
                lambda: httpx.post(
                    sim.url + "/v1/chat/completions",
                    json={"model": "m1", "messages": [{"role": "user", "content": "x"}]},
                    timeout=20,
                )
            )
            wait_for(lambda: sim.stats()["hanging"] == 1)
            started = time.monotonic()
            assert sim.stop() == 0
            assert time.monotonic() - started < 5
            response = parked.result(timeout=5)
        assert response.status_code == 503
        assert "shutting down" in response.json()["error"]["message"]
        assert sim.stderr_text() == ""


def test_sigterm_gives_slow_requests_the_grace_then_cuts_them() -> None:
    with SimulatorProcess(name="slow", latency_ms=20000, shutdown_timeout=0.5) as sim:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(chat, openai_client(sim, timeout=20))
            wait_for(lambda: sim.stats()["in_flight"] == 1)
            started = time.monotonic()
            assert sim.stop() == 0
            assert 0.4 < time.monotonic() - started < 3
            with pytest.raises(openai.APIConnectionError):
                slow.result(timeout=5)


def test_process_kill_and_fixed_port() -> None:
    with SimulatorProcess(name="first") as first:
        port = first.port
    # The port is free again after a clean stop and can be asked for explicitly.
    sim = SimulatorProcess(port=port, name="fixed").start()
    try:
        assert sim.port == port
        assert httpx.get(sim.url + "/health").json()["name"] == "fixed"
        sim.kill()
        assert sim.returncode == -9
        with pytest.raises(httpx.ConnectError):
            httpx.get(sim.url + "/health")
    finally:
        sim.stop()


def test_cli_rejects_bad_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.simulator", "--port", "0", "--error-rate", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "error_rate must be between 0 and 1" in result.stderr
    with pytest.raises(TypeError):
        SimulatorProcess(latency=5)
