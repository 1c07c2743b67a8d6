"""The data-plane endpoints: async Django views (not DRF, which halves throughput under ASGI).

POST /api/v1/generate and GET /api/v1/models (Switchyard's own shape), POST /v1/chat/completions
and GET /v1/models (OpenAI's shape, so the official client works unmodified). Every error has the
shape of apps.core.errors, with Retry-After and X-RateLimit-* on 429.
"""

from __future__ import annotations

import logging
import time

import orjson
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from apps.core.errors import error_body

from .pipeline import (
    Call,
    GatewayError,
    complete,
    now_utc,
    open_stream,
    parse_body,
    parse_spec,
    redis_phase,
    resolve_caller,
    start_call,
    start_remembered_call,
    stream_deltas,
)
from .pipeline import (
    models_for as _models_for,
)

logger = logging.getLogger(__name__)

JSON = "application/json"
MODELS_MAX_AGE = 300


def json_response(data, status: int = 200, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), content_type=JSON, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_of(exc: GatewayError) -> HttpResponse:
    return json_response(error_body(exc.status, exc.message, code=exc.code, fields=exc.fields), exc.status, exc.headers)


def _not_allowed(method: str) -> HttpResponse:
    response = error_of(GatewayError(405, f"Use {method} on this endpoint.", code="method_not_allowed"))
    response["Allow"] = method
    return response


def _call_headers(call: Call, response: HttpResponse) -> None:
    if call.admission is not None:
        for name, value in call.admission.headers.items():
            response[name] = value
    if call.deployment is not None:
        response["X-Switchyard-Deployment"] = call.deployment.name
        response["X-Switchyard-Region"] = call.deployment.region_id


async def _admitted_call(request, *, endpoint: str, allow_prompt: bool) -> Call:
    started = time.perf_counter()
    created_at = now_utc()
    body = parse_body(request)
    spec = parse_spec(body, allow_prompt=allow_prompt)
    tenant_hint = spec.tenant_id or request.headers.get("X-Switchyard-Tenant")
    try:
        async with redis_phase():
            call = await start_remembered_call(request, endpoint=endpoint, spec=spec, tenant_hint=tenant_hint,
                                               created_at=created_at, started=started)
            if call is not None:
                return call
            caller = await resolve_caller(request, tenant_id=tenant_hint, user_id=spec.user_id,
                                          department=spec.department, project=spec.project)
            return await start_call(request, endpoint=endpoint, spec=spec, caller=caller, created_at=created_at,
                                    started=started)
    except RedisError:
        logger.warning("redis unavailable while admitting a request", exc_info=True)
        raise GatewayError(503, "The gateway cannot reach its quota and cache store (Redis); try again shortly.",
                           code="service_unavailable", headers={"Retry-After": "5"}) from None


def _sse(data) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _usage(call: Call) -> dict:
    return {"prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
            "total_tokens": call.prompt_tokens + call.completion_tokens}


# --- Switchyard's API ------------------------------------------------------------------------

@csrf_exempt
async def generate(request):
    if request.method != "POST":
        return _not_allowed("POST")
    try:
        call = await _admitted_call(request, endpoint="generate", allow_prompt=True)
        if call.spec.stream:
            iterator = await open_stream(call)
            response = StreamingHttpResponse(_generate_events(call, iterator), content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        else:
            result = await complete(call)
            response = json_response(_generate_body(call, result.text, result.finish_reason))
        _call_headers(call, response)
        return response
    except GatewayError as exc:
        return error_of(exc)


def _generate_body(call: Call, text: str, finish_reason: str | None) -> dict:
    deployment = call.deployment
    return {
        "id": call.request_id,
        "request_id": call.request_id,
        "object": "generation",
        "model": call.spec.model,
        "output": text,
        "finish_reason": finish_reason or "stop",
        "usage": _usage(call),
        "latency_ms": round(call.latency * 1000, 2),
        "deployment": {"id": str(deployment.id), "name": deployment.name} if deployment else None,
        "region": deployment.region_id if deployment else None,
    }


async def _generate_events(call: Call, iterator):
    finish_reason = None
    async for item in stream_deltas(call, iterator):
        if isinstance(item, GatewayError):
            yield _sse({"type": "error", **error_body(item.status, item.message, code=item.code)})
            return
        if item.finish_reason:
            finish_reason = item.finish_reason
        if item.text:
            yield _sse({"type": "delta", "text": item.text})
    body = _generate_body(call, "", finish_reason)
    body.pop("output")
    yield _sse({"type": "done", **body})


@csrf_exempt
async def models(request):
    return await _models(request, openai_shape=False)


# --- OpenAI-compatible -----------------------------------------------------------------------

@csrf_exempt
async def chat_completions(request):
    if request.method != "POST":
        return _not_allowed("POST")
    try:
        call = await _admitted_call(request, endpoint="chat", allow_prompt=False)
        if call.spec.stream:
            iterator = await open_stream(call)
            response = StreamingHttpResponse(_chat_chunks(call, iterator), content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        else:
            result = await complete(call)
            response = json_response({
                "id": f"chatcmpl-{call.request_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.spec.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason or "stop",
                    "logprobs": None,
                }],
                "usage": _usage(call),
                "system_fingerprint": None,
            })
        _call_headers(call, response)
        return response
    except GatewayError as exc:
        return error_of(exc)


async def _chat_chunks(call: Call, iterator):
    base = {"id": f"chatcmpl-{call.request_id}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": call.spec.model, "system_fingerprint": None}
    yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    finish_reason = None
    async for item in stream_deltas(call, iterator):
        if isinstance(item, GatewayError):
            yield _sse(error_body(item.status, item.message, code=item.code))
            return
        if item.finish_reason:
            finish_reason = item.finish_reason
        if item.text:
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": item.text}, "finish_reason": None}]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason or "stop"}]})
    if call.spec.include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(call)})
    yield b"data: [DONE]\n\n"


@csrf_exempt
async def openai_models(request):
    return await _models(request, openai_shape=True)


async def _models(request, *, openai_shape: bool):
    if request.method != "GET":
        return _not_allowed("GET")
    try:
        tenant_id = request.GET.get("tenant_id") or request.headers.get("X-Switchyard-Tenant")
        caller = await resolve_caller(request, tenant_id=tenant_id, user_id=None)
        names = await _models_for(caller)
    except GatewayError as exc:
        return error_of(exc)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "switchyard"} for name in names]
    body = {"object": "list", "data": data}
    if not openai_shape:
        body["tenant_id"] = caller.tenant.id
    response = json_response(body)
    # Private: the list depends on the caller's tenant.
    response["Cache-Control"] = f"private, max-age={MODELS_MAX_AGE}"
    response["Vary"] = "Authorization"
    return response
