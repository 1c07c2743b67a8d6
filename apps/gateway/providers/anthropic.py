"""Anthropic Messages API: x-api-key and anthropic-version headers, system prompt lifted out of the messages.

`base_url` is the API host (https://api.anthropic.com); the adapter appends /v1/messages (a base_url that
already ends in /v1 is accepted too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.conf import settings

from .base import ChatRequest, ChatResult, ProbeResult, Provider, ProviderError, StreamDelta
from .http import (
    api_root,
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

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
# Anthropic-specific request fields an OpenAI-shaped request may carry through `extra`.
PASSTHROUGH = ("top_p", "top_k", "stop_sequences", "metadata", "tools", "tool_choice")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def split_messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI-style messages -> (system prompt, Anthropic messages). System and developer messages are
    joined into the top-level system prompt, which the Messages API takes instead of a message role."""
    system_parts: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts.append(_text_of(message.get("content")))
            continue
        content = message.get("content")
        out.append({"role": "assistant" if role == "assistant" else "user", "content": content if content is not None else ""})
    return ("\n\n".join(p for p in system_parts if p) or None), out


def _stop_reason(reason: str | None) -> str | None:
    return STOP_REASONS.get(reason, reason) if reason else None


class AnthropicProvider(Provider):
    kind = "anthropic"
    label = "Anthropic"

    def url(self, deployment, path: str) -> str:
        return join_url(api_root(deployment.base_url), path)

    def headers(self, deployment, request: ChatRequest | None = None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "anthropic-version": settings.GATEWAY_ANTHROPIC_VERSION,
        }
        headers.update(auth_headers(deployment, {"x-api-key": deployment.api_key or ""}))
        if request is not None:
            headers.update(tracing_headers(request))
        return headers

    def body(self, deployment, request: ChatRequest) -> dict[str, Any]:
        system, messages = split_messages(request.messages)
        body: dict[str, Any] = {k: request.extra[k] for k in PASSTHROUGH if k in request.extra}
        if "stop" in request.extra and "stop_sequences" not in body:
            stop = request.extra["stop"]
            body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        body["model"] = deployment.upstream_model or request.model
        body["messages"] = messages
        # The Messages API requires max_tokens; OpenAI-style callers may leave it out.
        body["max_tokens"] = request.max_tokens or settings.GATEWAY_ANTHROPIC_DEFAULT_MAX_TOKENS
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def complete(self, deployment, request: ChatRequest) -> ChatResult:
        body = self.body(deployment, request)
        async with translate_errors(self.label, deployment.timeout_seconds):
            async with get_session().post(
                request_url(self.url(deployment, "/v1/messages")),
                data=orjson.dumps(body),
                headers=self.headers(deployment, request),
                timeout=call_timeout(deployment),
            ) as response:
                await raise_for_status(response, self.label)
                raw = await response.read()
        try:
            data = orjson.loads(raw)
            blocks = data["content"]
            text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
            usage = data.get("usage") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ProviderError("Anthropic sent an answer that is not a message", kind="server_error") from None
        return ChatResult(
            text=text,
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            finish_reason=_stop_reason(data.get("stop_reason")),
            upstream_model=str(data.get("model") or body["model"]),
        )

    async def stream(self, deployment, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        body = self.body(deployment, request)
        body["stream"] = True
        headers = self.headers(deployment, request)
        headers["Accept"] = "text/event-stream"
        prompt_tokens = completion_tokens = None
        finish_reason = None
        async with translate_errors(self.label, deployment.timeout_seconds):
            async with get_session().post(
                request_url(self.url(deployment, "/v1/messages")),
                data=orjson.dumps(body),
                headers=headers,
                timeout=stream_timeout(deployment),
            ) as response:
                await raise_for_status(response, self.label)
                async for event, data in sse_events(response):
                    try:
                        payload = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise ProviderError("Anthropic sent a malformed stream event", kind="server_error") from None
                    kind = payload.get("type") or event
                    if kind == "content_block_delta":
                        delta = payload.get("delta") or {}
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield StreamDelta(text=delta["text"])
                    elif kind == "message_start":
                        usage = (payload.get("message") or {}).get("usage") or {}
                        prompt_tokens = usage.get("input_tokens", prompt_tokens)
                    elif kind == "message_delta":
                        usage = payload.get("usage") or {}
                        completion_tokens = usage.get("output_tokens", completion_tokens)
                        prompt_tokens = usage.get("input_tokens") or prompt_tokens
                        finish_reason = _stop_reason((payload.get("delta") or {}).get("stop_reason")) or finish_reason
                    elif kind == "message_stop":
                        break
                    elif kind == "error":
                        error = payload.get("error") or {}
                        error_type = error.get("type", "api_error")
                        raise ProviderError(
                            f"Anthropic failed mid-stream: {error.get('message', error_type)}",
                            kind="rate_limited" if error_type == "rate_limit_error" else "server_error",
                        )
        yield StreamDelta(
            text="", finish_reason=finish_reason or "stop", prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def probe_request(self, deployment) -> tuple[str, dict[str, str]]:
        return self.url(deployment, "/v1/models"), self.headers(deployment)

    async def probe(self, deployment) -> ProbeResult:
        url, headers = self.probe_request(deployment)
        return await probe_get(self.label, deployment, url, headers=headers)


register(AnthropicProvider())
