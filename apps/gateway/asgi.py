"""ASGI entry point with a fast lane for the data plane.

The four data-plane paths go straight to their async views; everything else (console, management
API, /metrics) goes through Django's full handler. Why: the console's middleware (sessions, CSRF,
messages, session policy, MFA) never applies to API-key traffic, and the sync-only middleware
among it makes Django run each request through a worker thread, which caps the requests one
process holds in flight at the size of its thread pool (a few) and adds ~4 ms to each. The views
are the same either way; only the dispatch differs. Serve with
`uvicorn apps.gateway.asgi:application`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import aclosing

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIRequest  # noqa: E402

from apps.core.errors import error_body  # noqa: E402
from apps.core.middleware import _assign  # noqa: E402

from . import endpoints  # noqa: E402

logger = logging.getLogger(__name__)

FAST_ROUTES = {
    "/v1/chat/completions": endpoints.chat_completions,
    "/v1/models": endpoints.openai_models,
    "/api/v1/generate": endpoints.generate,
    "/api/v1/models": endpoints.models,
}


class _Body:
    """The request body as the file-like object ASGIRequest reads."""

    def __init__(self, data: bytes):
        import io

        self._io = io.BytesIO(data)
        self.read = self._io.read
        self.readline = self._io.readline
        self.seek = self._io.seek
        self.close = self._io.close

    def __iter__(self):
        return iter(self._io)


async def application(scope, receive, send):
    if scope["type"] == "http":
        view = FAST_ROUTES.get(scope["path"])
        if view is not None:
            await _serve(view, scope, receive, send)
            return
    await django_application(scope, receive, send)


async def _serve(view, scope, receive, send) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            await _send_simple(send, 413, error_body(413, "The request body is too large.", code="request_too_large"))
            return
        chunks.append(chunk)
        if not message.get("more_body", False):
            break

    request = ASGIRequest(scope, _Body(b"".join(chunks)))
    request_id = _assign(request)
    work = asyncio.create_task(_respond(view, request, request_id, send))
    disconnect = asyncio.create_task(_wait_disconnect(receive))
    done, _ = await asyncio.wait({work, disconnect}, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        disconnect.cancel()
        return
    # The client left: cancel the view so its `finally` blocks release the slot and record the call.
    work.cancel()
    try:
        await work
    except asyncio.CancelledError:
        pass


async def _wait_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _respond(view, request, request_id: str, send) -> None:
    try:
        response = await view(request)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("data-plane view failed", extra={"request_id": request_id})
        await _send_simple(send, 500, error_body(500, "Internal error; it has been logged."), request_id)
        return
    response["X-Request-ID"] = request_id
    response.setdefault("X-Content-Type-Options", "nosniff")
    headers = [(name.encode("latin1"), str(value).encode("latin1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if response.streaming:
        async with aclosing(aiter(response)) as content:
            async for part in content:
                await send({"type": "http.response.body", "body": bytes(part), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await send({"type": "http.response.body", "body": response.content, "more_body": False})


async def _send_simple(send, status: int, body: dict, request_id: str | None = None) -> None:
    import orjson

    headers = [(b"content-type", b"application/json")]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(body), "more_body": False})


# OpenTelemetry: a server span per request; the traceparent forwarded upstream names it (apps/core/tracing.py).
from apps.core.tracing import TraceContextMiddleware  # noqa: E402

application = TraceContextMiddleware(application)
