"""Upstream model simulator: a fake OpenAI/Anthropic HTTP server for Switchyard demos, tests and benchmarks.

Endpoints
    POST /v1/chat/completions   OpenAI chat completions (JSON or SSE with ``"stream": true``)
    POST /v1/messages           Anthropic Messages (JSON or the Anthropic SSE event sequence)
    GET  /v1/models             model list (Anthropic shape when ``anthropic-version`` is sent, else OpenAI)
    GET  /health                200 ``{"status": "ok", "name": ...}``; 503 while ``down``
    GET/POST/DELETE /_control   read / partially update / reset the behaviour knobs
    GET/DELETE /_requests       request log of /v1 calls (``?since=<seq>&limit=<n>``; 499 = client gave up) / clear
    GET/DELETE /_stats          counters / reset them

Behaviour knobs (CLI flags at start, ``POST /_control`` at runtime): ``name``, ``latency_ms`` (time to the
first byte of every model answer, errors included), ``jitter_ms`` (uniform extra delay in [0, jitter_ms]),
``token_latency_ms`` (gap between streamed text chunks; a non-streaming answer waits the same total so it
arrives when the streamed one would have finished), ``output_tokens``, ``error_rate``, ``error_status``,
``retry_after_s`` (Retry-After sent with 429), ``down``, ``hang``, ``models``, ``require_key``.

Token accounting is exact and deterministic: prompt tokens are ceil(text chars / 4) (at least 1) and the
answer is ``output_tokens`` lorem-ipsum words (fewer when the request's max_tokens is smaller), one token
per word, chosen from a start word derived from the prompt text.

Run: ``python -m bench.simulator --host 127.0.0.1 --port 9100 --name us-east-sim --latency-ms 200``.
From Python: ``start_simulator()`` (inside a running loop), ``SimulatorThread`` or ``SimulatorProcess``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import itertools
import math
import os
import random
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import orjson
from aiohttp import web

DEFAULT_MODELS: tuple[str, ...] = ("sim-small", "sim-large", "gpt-4o-mini", "claude-3-5-haiku")

# Headers copied into the request log; any ``x-switchyard-*`` header is copied as well.
LOGGED_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "x-request-id",
        "anthropic-version",
        "anthropic-beta",
        "user-agent",
        "idempotency-key",
    }
)

LOREM_WORDS: tuple[str, ...] = tuple(
    (
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
        "dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip "
        "ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
        "fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in culpa qui officia deserunt "
        "mollit anim id est laborum"
    ).split()
)

Api = Literal["openai", "anthropic"]

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
# nginx's convention for "client closed the connection before the answer was complete".
STATUS_CLIENT_CLOSED = 499
_READY_RE = re.compile(r"listening on (http://\S+)")


@dataclass
class SimulatorConfig:
    """Everything that shapes the simulator; field names match the CLI flags and the /_control keys."""

    name: str = "simulator"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    token_latency_ms: float = 0.0
    output_tokens: int = 16
    error_rate: float = 0.0
    error_status: int = 500
    retry_after_s: int = 1
    down: bool = False
    hang: bool = False
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    require_key: str | None = None
    # Start-up only: not changeable through /_control.
    request_log: str | None = None
    request_log_size: int = 10000


STARTUP_ONLY_FIELDS = frozenset({"request_log", "request_log_size"})


def _as_number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a non-negative number")
    return value


def _as_int(value: Any, key: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{key} must be an integer {bound}")
    return value


def _as_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _as_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ValueError(f"{key} must be a non-empty printable string")
    return value


def _as_rate(value: Any, key: str) -> float:
    number = _as_number(value, key)
    if number > 1:
        raise ValueError(f"{key} must be between 0 and 1")
    return float(number)


def _as_models(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(m, str) and m for m in value):
        raise ValueError(f"{key} must be a non-empty list of model ids")
    return list(value)


def _as_optional_key(value: Any, key: str) -> str | None:
    if value is None:
        return None
    return _as_name(value, key)


_VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "name": _as_name,
    "latency_ms": _as_number,
    "jitter_ms": _as_number,
    "token_latency_ms": _as_number,
    "output_tokens": lambda v, k: _as_int(v, k, 1),
    "error_rate": _as_rate,
    "error_status": lambda v, k: _as_int(v, k, 400, 599),
    "retry_after_s": lambda v, k: _as_int(v, k, 0),
    "down": _as_bool,
    "hang": _as_bool,
    "models": _as_models,
    "require_key": _as_optional_key,
}


def validate_changes(changes: Any) -> dict[str, Any]:
    """Check a partial /_control update and return it normalised; raises ValueError on the first problem."""
    if not isinstance(changes, dict):
        raise ValueError("body must be a JSON object")
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        validator = _VALIDATORS.get(key)
        if validator is None:
            raise ValueError(f"unknown or start-up only setting: {key}")
        clean[key] = validator(value, key)
    return clean


def control_view(config: SimulatorConfig) -> dict[str, Any]:
    """The runtime-adjustable part of a config, as /_control shows it."""
    return {k: v for k, v in asdict(config).items() if k not in STARTUP_ONLY_FIELDS}


def key_fingerprint(key: str) -> str:
    """The first 12 hex digits of sha256(key): lets tests see which upstream key was used without logging it."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _collect_text(value: Any, out: list[str]) -> None:
    # Covers plain strings, OpenAI/Anthropic content-part lists and Anthropic tool_result blocks.
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect_text(item, out)
    elif isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str):
            out.append(text)
        content = value.get("content")
        if content is not None:
            _collect_text(content, out)


def prompt_text(messages: list[Any], system: Any = None) -> str:
    """All text a request sends (system prompt and message contents), concatenated."""
    parts: list[str] = []
    if system is not None:
        _collect_text(system, parts)
    for message in messages:
        if isinstance(message, dict):
            _collect_text(message.get("content"), parts)
    return "".join(parts)


def count_prompt_tokens(text: str) -> int:
    """The simulator's tokenizer: one token per four characters, rounded up, never less than one."""
    return max(1, math.ceil(len(text) / 4))


def output_chunks(text: str, n_tokens: int) -> list[str]:
    """``n_tokens`` word chunks (one token each) chosen deterministically from the prompt text."""
    start = zlib.crc32(text.encode()) % len(LOREM_WORDS)
    size = len(LOREM_WORDS)
    return [(" " if i else "") + LOREM_WORDS[(start + i) % size] for i in range(n_tokens)]


def _requested_max_tokens(body: dict[str, Any], api: Api) -> int | None:
    keys = ("max_completion_tokens", "max_tokens") if api == "openai" else ("max_tokens",)
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def error_body(api: Api, status: int, message: str) -> dict[str, Any]:
    """An error payload in the provider's own shape."""
    if api == "anthropic":
        etype = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": message}}
    etype = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": etype, "param": None, "code": _OPENAI_ERROR_CODES.get(status)}}


_INJECTED_MESSAGES = {
    429: "Rate limit reached (simulated).",
    500: "The server had an error while processing your request (simulated).",
    502: "Bad gateway (simulated).",
    503: "The engine is currently overloaded, please try again later (simulated).",
}


class SimulatorState:
    """Live configuration, request log and counters of one simulator instance (used from its event loop only)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.initial = replace(config, models=list(config.models))
        self.config = config
        self.log: deque[dict[str, Any]] = deque(maxlen=max(1, config.request_log_size))
        self.seq = 0
        self.log_file: IO[bytes] | None = None
        if config.request_log:
            # Unbuffered: each record is one write() so lines are complete and visible immediately.
            self.log_file = open(config.request_log, "ab", buffering=0)
        self.started_at = time.time()
        self.id_prefix = secrets.token_hex(4)
        self.ids = itertools.count(1)
        self.unhang = asyncio.Event()
        self.model_set: frozenset[str] = frozenset()
        self.in_flight = 0
        # Parked on `hang`: unlike in_flight, these have read their whole body, so tests can wait for this.
        self.hanging = 0
        # Handler tasks of model requests, so shutdown can cancel the ones still running after the grace period.
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.reset_stats()
        self._config_changed()

    def reset_stats(self) -> None:
        self.total = 0
        self.by_status: dict[int, int] = {}
        self.health_checks = 0
        self.max_in_flight = self.in_flight

    def apply(self, changes: dict[str, Any]) -> None:
        self.config = replace(self.config, **validate_changes(changes))
        self._config_changed()

    def reset_config(self) -> None:
        self.config = replace(self.initial, models=list(self.initial.models))
        self._config_changed()

    def _config_changed(self) -> None:
        self.model_set = frozenset(self.config.models)
        # Clearing the event parks new requests; setting it releases every request parked so far.
        if self.config.hang:
            self.unhang.clear()
        else:
            self.unhang.set()

    def next_id(self) -> str:
        return f"{self.id_prefix}{next(self.ids):08x}"

    def record(self, entry: dict[str, Any]) -> None:
        self.seq += 1
        entry["seq"] = self.seq
        self.total += 1
        status = entry["status"]
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.log.append(entry)
        if self.log_file is not None:
            self.log_file.write(orjson.dumps(entry) + b"\n")

    def entries_since(self, since: int, limit: int | None) -> list[dict[str, Any]]:
        log = self.log
        if not log:
            return []
        # Sequence numbers in the deque are contiguous, so the first wanted entry's index is arithmetic.
        start = max(0, since - log[0]["seq"] + 1)
        stop = None if limit is None else start + limit
        return list(itertools.islice(log, start, stop))

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "total": self.total,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "hanging": self.hanging,
            "health_checks": self.health_checks,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


STATE_KEY: web.AppKey[SimulatorState] = web.AppKey("simulator_state", SimulatorState)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    hdrs = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
    return web.Response(body=orjson.dumps(data), status=status, headers=hdrs)


def _error(api: Api, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(error_body(api, status, message), status, headers)


def _request_key(request: web.Request, api: Api) -> str | None:
    if api == "anthropic":
        key = request.headers.get("x-api-key")
        if key:
            return key
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


async def _first_byte_delay(config: SimulatorConfig) -> None:
    delay = config.latency_ms
    if config.jitter_ms:
        delay += random.uniform(0, config.jitter_ms)
    if delay > 0:
        await asyncio.sleep(delay / 1000)


class _Handlers:
    """Request handlers bound to one SimulatorState."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def health(self, request: web.Request) -> web.Response:
        state = self.state
        state.health_checks += 1
        config = state.config
        if config.down:
            return _json({"status": "down", "name": config.name}, 503)
        return _json({"status": "ok", "name": config.name})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._model_call(request, "openai")

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self._model_call(request, "anthropic")

    async def models(self, request: web.Request) -> web.StreamResponse:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        return await self._model_call(request, api, listing=True)

    async def _model_call(self, request: web.Request, api: Api, listing: bool = False) -> web.StreamResponse:
        state = self.state
        started = time.time()
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            lower = key.lower()
            if lower in LOGGED_HEADERS or lower.startswith("x-switchyard-"):
                headers[lower] = value
        key = _request_key(request, api)
        entry: dict[str, Any] = {
            "seq": 0,
            "time": started,
            "method": request.method,
            "path": request.path,
            "api": api,
            "model": None,
            "stream": False,
            "status": STATUS_CLIENT_CLOSED,
            "duration_ms": 0.0,
            "headers": headers,
            "key_fingerprint": key_fingerprint(key) if key else None,
            "prompt_tokens": None,
            "completion_tokens": None,
        }
        task = asyncio.current_task()
        if task is not None:
            state.tasks.add(task)
        state.in_flight += 1
        if state.in_flight > state.max_in_flight:
            state.max_in_flight = state.in_flight
        try:
            if listing:
                response = await self._list_models(request, api, key)
            else:
                response = await self._complete(request, api, key, entry)
            entry["status"] = response.status
            return response
        finally:
            # Reached on success, on error and when aiohttp cancels the handler because the client left.
            state.in_flight -= 1
            if task is not None:
                state.tasks.discard(task)
            entry["duration_ms"] = round((time.time() - started) * 1000, 3)
            state.record(entry)

    def _gate(self, api: Api, key: str | None) -> web.Response | None:
        config = self.state.config
        if config.down:
            return _error(api, 503, f"Simulator {config.name} is down.")
        if config.require_key is not None and key != config.require_key:
            if api == "anthropic":
                return _error(api, 401, "invalid x-api-key")
            return _error(api, 401, "Incorrect API key provided.")
        return None

    async def _list_models(self, request: web.Request, api: Api, key: str | None) -> web.Response:
        rejected = self._gate(api, key)
        if rejected is not None:
            return rejected
        config = self.state.config
        created = int(self.state.started_at)
        if api == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2024-01-01T00:00:00Z"}
                for m in config.models
            ]
            return _json({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
        data = [{"id": m, "object": "model", "created": created, "owned_by": config.name} for m in config.models]
        return _json({"object": "list", "data": data})

    async def _complete(
        self, request: web.Request, api: Api, key: str | None, entry: dict[str, Any]
    ) -> web.StreamResponse:
        state = self.state
        rejected = self._gate(api, key)
        if rejected is not None:
            return rejected
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(api, 400, "Request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(api, 400, "Request body must be a JSON object.")
        model = body.get("model")
        stream = body.get("stream") is True
        entry["model"] = model
        entry["stream"] = stream
        if not isinstance(model, str) or not model:
            return _error(api, 400, "model: field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(api, 400, "messages: field required")
        if model not in state.model_set:
            if api == "anthropic":
                return _error(api, 404, f"model: {model}")
            return _error(api, 404, f"The model `{model}` does not exist or you do not have access to it.")

        if state.config.hang:
            state.hanging += 1
            try:
                await state.unhang.wait()
            finally:
                state.hanging -= 1
            if state.closing:
                return _error(api, 503, f"Simulator {state.config.name} is shutting down.")
        config = state.config  # re-read: a parked request answers with the settings at its release
        if config.error_rate and random.random() < config.error_rate:
            await _first_byte_delay(config)
            status = config.error_status
            extra = {"Retry-After": str(config.retry_after_s)} if status == 429 else None
            message = _INJECTED_MESSAGES.get(status, f"Simulated error {status}.")
            return _error(api, status, message, extra)

        text = prompt_text(messages, body.get("system") if api == "anthropic" else None)
        prompt_tokens = count_prompt_tokens(text)
        n_tokens = config.output_tokens
        max_tokens = _requested_max_tokens(body, api)
        truncated = max_tokens is not None and max_tokens < n_tokens
        if truncated:
            n_tokens = max_tokens
        chunks = output_chunks(text, n_tokens)
        entry["prompt_tokens"] = prompt_tokens
        entry["completion_tokens"] = n_tokens
        gap_s = config.token_latency_ms / 1000

        await _first_byte_delay(config)
        if not stream and gap_s > 0 and n_tokens > 1:
            await asyncio.sleep(gap_s * (n_tokens - 1))
        if api == "openai":
            return await self._openai(request, model, body, chunks, prompt_tokens, truncated, stream, gap_s)
        return await self._anthropic(request, model, chunks, prompt_tokens, truncated, stream, gap_s)

    async def _openai(
        self,
        request: web.Request,
        model: str,
        body: dict[str, Any],
        chunks: list[str],
        prompt_tokens: int,
        truncated: bool,
        stream: bool,
        gap_s: float,
    ) -> web.StreamResponse:
        cid = "chatcmpl-sim" + self.state.next_id()
        created = int(time.time())
        finish = "length" if truncated else "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(chunks),
            "total_tokens": prompt_tokens + len(chunks),
        }
        if not stream:
            return _json(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(chunks), "refusal": None},
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                }
            )

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def frame(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            chunk: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                chunk["usage"] = None
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        head = frame({"role": "assistant", "content": "", "refusal": None}, None)
        parts = [frame({"content": c}, None) for c in chunks]
        tail = frame({}, finish)
        if include_usage:
            final = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [],
                "usage": usage,
            }
            tail += b"data: " + orjson.dumps(final) + b"\n\n"
        tail += b"data: [DONE]\n\n"
        return await _stream(request, head, parts, tail, gap_s)

    async def _anthropic(
        self,
        request: web.Request,
        model: str,
        chunks: list[str],
        prompt_tokens: int,
        truncated: bool,
        stream: bool,
        gap_s: float,
    ) -> web.StreamResponse:
        mid = "msg_sim" + self.state.next_id()
        stop_reason = "max_tokens" if truncated else "end_turn"
        if not stream:
            return _json(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "".join(chunks)}],
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": len(chunks)},
                }
            )

        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        message = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Anthropic reports a provisional output count of 1 at message_start; the real one comes last.
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
        }
        head = (
            event("message_start", {"type": "message_start", "message": message})
            + event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            + event("ping", {"type": "ping"})
        )
        parts = [
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}},
            )
            for c in chunks
        ]
        tail = (
            event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": len(chunks)},
                },
            )
            + event("message_stop", {"type": "message_stop"})
        )
        return await _stream(request, head, parts, tail, gap_s)

    async def get_control(self, request: web.Request) -> web.Response:
        return _json(control_view(self.state.config))

    async def post_control(self, request: web.Request) -> web.Response:
        try:
            self.state.apply(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(control_view(self.state.config))

    async def delete_control(self, request: web.Request) -> web.Response:
        self.state.reset_config()
        return _json(control_view(self.state.config))

    async def get_requests(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
            limit_raw = request.query.get("limit")
            limit = None if limit_raw is None else max(0, int(limit_raw))
        except ValueError:
            return _json({"error": "since and limit must be integers"}, 400)
        return _json(self.state.entries_since(since, limit))

    async def delete_requests(self, request: web.Request) -> web.Response:
        self.state.log.clear()
        return _json({"cleared": True, "seq": self.state.seq})

    async def get_stats(self, request: web.Request) -> web.Response:
        return _json(self.state.stats())

    async def delete_stats(self, request: web.Request) -> web.Response:
        self.state.reset_stats()
        return _json(self.state.stats())


async def _stream(
    request: web.Request, head: bytes, parts: list[bytes], tail: bytes, gap_s: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    if gap_s <= 0 or len(parts) < 2:
        # No pacing wanted: one write keeps the fast path cheap.
        await response.write(head + b"".join(parts) + tail)
    else:
        await response.write(head + parts[0])
        for part in parts[1:]:
            await asyncio.sleep(gap_s)
            await response.write(part)
        await response.write(tail)
    await response.write_eof()
    return response


def create_app(config: SimulatorConfig | None = None, shutdown_timeout: float = 2.0) -> web.Application:
    """Build the aiohttp application; ``shutdown_timeout`` is the grace in-flight requests get at shutdown."""
    state = SimulatorState(config or SimulatorConfig())
    handlers = _Handlers(state)
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE_KEY] = state

    async def add_name(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Simulator-Name"] = state.config.name

    async def drain(app: web.Application) -> None:
        # aiohttp's own shutdown cannot interrupt a handler parked on an Event and waits its timeout twice,
        # so drain here: release parked requests (they answer 503), give the rest the grace, cancel stragglers.
        # (aiohttp stops reading once shutdown begins, so a request whose body was still in transit can only
        # be cancelled.)
        state.closing = True
        state.unhang.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + shutdown_timeout
        while state.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for task in list(state.tasks):
            task.cancel()

    async def close_state(app: web.Application) -> None:
        state.close()

    app.on_response_prepare.append(add_name)
    app.on_shutdown.append(drain)
    app.on_cleanup.append(close_state)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/v1/messages", handlers.messages)
    app.router.add_get("/v1/models", handlers.models, allow_head=False)
    app.router.add_get("/health", handlers.health, allow_head=False)
    app.router.add_get("/_control", handlers.get_control, allow_head=False)
    app.router.add_post("/_control", handlers.post_control)
    app.router.add_delete("/_control", handlers.delete_control)
    app.router.add_get("/_requests", handlers.get_requests, allow_head=False)
    app.router.add_delete("/_requests", handlers.delete_requests)
    app.router.add_get("/_stats", handlers.get_stats, allow_head=False)
    app.router.add_delete("/_stats", handlers.delete_stats)
    return app


async def start_simulator(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 2.0,
) -> tuple[web.AppRunner, int]:
    """Start a simulator on the running loop; returns the runner (``await runner.cleanup()`` stops it) and port."""
    app = create_app(config, shutdown_timeout)
    # handler_cancellation: a client that gives up (timeout tests) frees its slot and is logged as 499.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    # A deep backlog so a burst of 1000+ simultaneous connects is not dropped into SYN retransmits.
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    return runner, runner.addresses[0][1]


def simulator_state(runner: web.AppRunner) -> SimulatorState:
    """The live state behind a runner from start_simulator (for in-process inspection)."""
    return runner.app[STATE_KEY]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench.simulator", description="Fake OpenAI/Anthropic upstream for Switchyard."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed at start-up)")
    parser.add_argument("--name", default=defaults.name, help="echoed in X-Simulator-Name and /health")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms, help="time to first byte")
    parser.add_argument("--jitter-ms", type=float, default=defaults.jitter_ms, help="uniform extra delay 0..N ms")
    parser.add_argument("--token-latency-ms", type=float, default=defaults.token_latency_ms)
    parser.add_argument("--output-tokens", type=int, default=defaults.output_tokens)
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate, help="0..1")
    parser.add_argument("--error-status", type=int, default=defaults.error_status, help="e.g. 500, 429, 503")
    parser.add_argument("--retry-after-s", type=int, default=defaults.retry_after_s, help="Retry-After with 429")
    parser.add_argument("--down", action="store_true", help="answer 503 everywhere, /health included")
    parser.add_argument("--hang", action="store_true", help="park model requests until released")
    parser.add_argument("--models", default=",".join(defaults.models), help="comma-separated model ids")
    parser.add_argument("--require-key", default=None, help="only this API key is accepted")
    parser.add_argument("--request-log", default=None, help="also append each request as a JSON line here")
    parser.add_argument("--request-log-size", type=int, default=defaults.request_log_size)
    parser.add_argument("--shutdown-timeout", type=float, default=2.0, help="grace for in-flight requests")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Validate parsed CLI flags with the same rules as /_control."""
    runtime = validate_changes(
        {
            "name": args.name,
            "latency_ms": args.latency_ms,
            "jitter_ms": args.jitter_ms,
            "token_latency_ms": args.token_latency_ms,
            "output_tokens": args.output_tokens,
            "error_rate": args.error_rate,
            "error_status": args.error_status,
            "retry_after_s": args.retry_after_s,
            "down": args.down,
            "hang": args.hang,
            "models": [m.strip() for m in args.models.split(",") if m.strip()],
            "require_key": args.require_key,
        }
    )
    if args.request_log_size < 1:
        raise ValueError("request_log_size must be >= 1")
    return SimulatorConfig(**runtime, request_log=args.request_log, request_log_size=args.request_log_size)


async def serve(config: SimulatorConfig, host: str, port: int, shutdown_timeout: float = 2.0) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    runner, bound_port = await start_simulator(config, host, port, shutdown_timeout=shutdown_timeout)
    # The process is ours alone: move start-up objects out of the collector's view and collect young objects
    # less often. With 1000 requests in flight this cuts CPU per request by about a fifth.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SimulatorProcess reads this line to learn the port; it is the only thing written to stdout.
    print(f"simulator {config.name} listening on {_url(host, bound_port)}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        import uvloop  # installed with uvicorn[standard]; about a third less CPU per request
    except ImportError:
        asyncio.run(serve(config, args.host, args.port, args.shutdown_timeout))
    else:
        uvloop.run(serve(config, args.host, args.port, args.shutdown_timeout))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Handles for tests and the demo runner.

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulatorHandle:
    """Shared client for a running simulator: base URL plus calls to its control, log and stats endpoints."""

    host: str = "127.0.0.1"
    port: int = 0

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9100``; OpenAI clients want ``url + "/v1"``."""
        return _url(self.host, self.port)

    def call(self, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Any:
        data = None if payload is None else orjson.dumps(payload)
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=_JSON_HEADERS)
        try:
            with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"{method} {path} -> {exc.code}: {detail}") from exc

    def health_status(self, timeout: float = 2.0) -> int:
        """HTTP status of /health (200 or 503)."""
        request = urllib.request.Request(self.url + "/health")
        try:
            with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def get_control(self) -> dict[str, Any]:
        return self.call("GET", "/_control")

    def control(self, **changes: Any) -> dict[str, Any]:
        """Partially update the behaviour, e.g. ``sim.control(latency_ms=200, error_rate=0.1)``."""
        return self.call("POST", "/_control", changes)

    def reset(self) -> dict[str, Any]:
        """Restore the start-up behaviour."""
        return self.call("DELETE", "/_control")

    def requests(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        query = f"?since={since}" + ("" if limit is None else f"&limit={limit}")
        return self.call("GET", "/_requests" + query)

    def clear_requests(self) -> None:
        self.call("DELETE", "/_requests")

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/_stats")

    def reset_stats(self) -> dict[str, Any]:
        return self.call("DELETE", "/_stats")


def options_to_args(options: dict[str, Any]) -> list[str]:
    """Turn SimulatorConfig-style keyword options into CLI flags (``latency_ms=5`` -> ``--latency-ms 5``)."""
    known = {f.name for f in fields(SimulatorConfig)} | {"shutdown_timeout"}
    args: list[str] = []
    for key, value in options.items():
        if key not in known:
            raise TypeError(f"unknown simulator option: {key}")
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            args += [flag, ",".join(value)]
        else:
            args += [flag, str(value)]
    return args


class SimulatorProcess(SimulatorHandle):
    """``python -m bench.simulator`` as a child process; ``with SimulatorProcess(name="a", latency_ms=50) as sim:``.

    Keyword options are SimulatorConfig fields (plus ``shutdown_timeout``). Without ``port`` the child binds a
    free port itself and reports it, so there is no pick-then-bind race.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 15.0,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.host = host
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.argv = [python, "-m", "bench.simulator", "--host", host, "--port", str(port or 0)]
        self.argv += options_to_args(options)
        self.env = dict(os.environ if env is None else env)
        # Make `bench` importable wherever the caller runs from, without changing its working directory.
        root = str(Path(__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderr_final = ""

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far (tracebacks, warnings)."""
        if self._stderr is None:
            return self._stderr_final
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def start(self) -> Self:
        if self.proc is not None:
            raise RuntimeError("simulator already started")
        # A file, not a pipe: nobody drains stderr while the child runs, and a pipe could fill up and block it.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=self.env
        )
        deadline = time.monotonic() + self.startup_timeout
        try:
            self.port = self._read_port(deadline)
            self._wait_health(deadline)
        except BaseException:
            self.kill()
            raise
        return self

    def _read_port(self, deadline: float) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"simulator did not start in {self.startup_timeout}s: {self.stderr_text()}")
            readable, _, _ = select.select([self.proc.stdout], [], [], min(remaining, 0.5))
            if readable:
                line = self.proc.stdout.readline().decode(errors="replace")
                match = _READY_RE.search(line)
                if match:
                    return int(match.group(1).rsplit(":", 1)[1])
                if not line:
                    self.proc.wait(timeout=5)
                    raise RuntimeError(f"simulator exited with {self.proc.returncode}: {self.stderr_text()}")

    def _wait_health(self, deadline: float) -> None:
        # Any HTTP answer counts: a simulator started with --down is up but reports 503.
        while True:
            try:
                self.health_status(timeout=1.0)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"simulator /health did not answer: {self.stderr_text()}") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (in-flight requests get the shutdown grace); SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, for tests of an upstream that vanishes without a goodbye."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr_final = self.stderr_text()
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SimulatorThread(SimulatorHandle):
    """A simulator on its own event loop in a background thread of this process; same interface as the process."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 2.0,
        **options: Any,
    ) -> None:
        base = config or SimulatorConfig()
        self.config = replace(base, **options) if options else base
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> SimulatorState:
        """Live state for read-only inspection (it belongs to the simulator's thread)."""
        if self._runner is None:
            raise RuntimeError("simulator not started")
        return simulator_state(self._runner)

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(
                    start_simulator(self.config, self.host, self.port, shutdown_timeout=self.shutdown_timeout)
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"simulator-{self.config.name}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("simulator thread did not start")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
