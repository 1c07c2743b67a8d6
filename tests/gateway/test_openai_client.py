"""The official openai Python client, unmodified, against a live Switchyard."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=20)


def test_chat_completion_with_the_openai_client(live_gateway, world):
    completion = client(live_gateway, world.key).chat.completions.create(
        model="sim-small", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=20,
    )
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 8
    assert completion.model == "sim-small"
    rows = usage_rows(tenant_id="tenant-a")
    assert len(rows) == 1 and rows[0].endpoint == "chat"


def test_streamed_chat_completion_with_the_openai_client(live_gateway, world):
    stream = client(live_gateway, world.key).chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "Stream to me"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 8
    assert chunks[-1].usage.completion_tokens == 8
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    row = usage_rows(tenant_id="tenant-a")[0]
    assert row.stream is True and row.status == "success" and row.ttft_ms is not None


def test_models_with_the_openai_client(live_gateway, world):
    ids = sorted(m.id for m in client(live_gateway, world.key).models.list())
    assert ids == ["sim-large", "sim-small"]


def test_errors_reach_the_openai_client_as_its_own_exceptions(live_gateway, world):
    api = client(live_gateway, world.key)
    with pytest.raises(openai.AuthenticationError):
        client(live_gateway, "sy_live_00000000_bad").chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as bad:
        api.chat.completions.create(model="sim-small", messages=[])
    assert bad.value.body["fields"] == {"messages": ["Must be a non-empty list of messages."]}
    world.tenant.requests_per_minute = 0
    world.tenant.save()
    with pytest.raises(openai.RateLimitError) as limited:
        api.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["Retry-After"]
