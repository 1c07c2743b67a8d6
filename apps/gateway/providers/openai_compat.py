"""OpenAI-compatible chat completions: OpenAI, Azure OpenAI, vLLM, Ollama and llama.cpp servers.

`base_url` is the API root the OpenAI SDK would take (e.g. https://api.openai.com/v1); the adapter appends
/chat/completions. Azure-style: base_url https://NAME.openai.azure.com/openai/deployments/DEP?api-version=V
and extra_headers {"api-key": "{api_key}"} (the placeholder is replaced by the decrypted key and no
Authorization header is sent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from .base import ChatRequest, ChatResult, ProbeResult, Provider, ProviderError, StreamDelta
from .http import (
    auth_headers,
    call_timeout,
    get_session,
    join_url,
    probe_get,
    raise_for_status,
    request_url,
    sse_events,
    stream_timeout,
    tracing_headers,
    translate_errors,
)
from .registry import register

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def _usage_int(usage: Any, key: str) -> int | None:
    if isinstance(usage, dict):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


class OpenAICompatibleProvider(Provider):
    kind = "openai"
    label = "OpenAI-compatible"
    chat_path = "/chat/completions"
    models_path = "/models"

    def url(self, deployment, path: str) -> str:
        return join_url(deployment.base_url, path)

    def headers(self, deployment, request: ChatRequest | None = None) -> dict[str, str]:
        headers = dict(_JSON)
        headers.update(auth_headers(deployment, {"Authorization": f"Bearer {deployment.api_key}"}))
        if request is not None:
            headers.update(tracing_headers(request))
        return headers

    def body(self, deployment, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = dict(request.extra)
        body["model"] = deployment.upstream_model or request.model
        body["messages"] = request.messages
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    async def complete(self, deployment, request: ChatRequest) -> ChatResult:
        session = get_session()
        body = self.body(deployment, request)
        body.pop("stream", None)
        body.pop("stream_options", None)
        async with translate_errors(self.label, deployment.timeout_seconds):
            async with session.post(
                request_url(self.url(deployment, self.chat_path)),
                data=orjson.dumps(body),
                headers=self.headers(deployment, request),
                timeout=call_timeout(deployment),
            ) as response:
                await raise_for_status(response, self.label)
                raw = await response.read()
        try:
            data = orjson.loads(raw)
            choice = data["choices"][0]
            message = choice.get("message") or {}
            text = message.get("content") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(f"{self.label} sent an answer that is not a chat completion", kind="server_error") from None
        usage = data.get("usage")
        return ChatResult(
            text=text if isinstance(text, str) else str(text),
            prompt_tokens=_usage_int(usage, "prompt_tokens"),
            completion_tokens=_usage_int(usage, "completion_tokens"),
            finish_reason=choice.get("finish_reason"),
            upstream_model=str(data.get("model") or body["model"]),
        )

    async def stream(self, deployment, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        session = get_session()
        body = self.body(deployment, request)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        headers = self.headers(deployment, request)
        headers["Accept"] = "text/event-stream"
        finish_reason = None
        prompt_tokens = completion_tokens = None
        async with translate_errors(self.label, deployment.timeout_seconds):
            async with session.post(
                request_url(self.url(deployment, self.chat_path)),
                data=orjson.dumps(body),
                headers=headers,
                timeout=stream_timeout(deployment),
            ) as response:
                await raise_for_status(response, self.label)
                async for _event, data in sse_events(response):
                    if data == b"[DONE]":
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise ProviderError(f"{self.label} sent a malformed stream event", kind="server_error") from None
                    if not isinstance(chunk, dict):
                        continue
                    if "error" in chunk:
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else str(error)
                        raise ProviderError(f"{self.label} failed mid-stream: {message}", kind="server_error")
                    usage = chunk.get("usage")
                    if usage:
                        prompt_tokens = _usage_int(usage, "prompt_tokens")
                        completion_tokens = _usage_int(usage, "completion_tokens")
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        if text:
                            yield StreamDelta(text=text)
        yield StreamDelta(
            text="", finish_reason=finish_reason or "stop", prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def probe_request(self, deployment) -> tuple[str, dict[str, str]]:
        """The URL and headers of the cheapest call that proves the deployment answers (the
        regions app's health checks use it too)."""
        return self.url(deployment, self.models_path), self.headers(deployment)

    async def probe(self, deployment) -> ProbeResult:
        url, headers = self.probe_request(deployment)
        return await probe_get(self.label, deployment, url, headers=headers)


register(OpenAICompatibleProvider())
