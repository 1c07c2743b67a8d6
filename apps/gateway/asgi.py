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

from apps.core.errors import error_body  # noqa: E402
from apps.core.middleware import _assign  # noqa: E402

from . import endpoints  # noqa: E402

logger = logging.getLogger(__name__)

# The views without their csrf_exempt wrapper (it only marks them for Django's CSRF middleware,
# which the fast lane does not run): one coroutine frame less on every resumption.
FAST_ROUTES = {
    "/v1/chat/completions": endpoints.chat_completions.__wrapped__,
    "/v1/models": endpoints.openai_models.__wrapped__,
    "/api/v1/generate": endpoints.generate.__wrapped__,
    "/api/v1/models": endpoints.models.__wrapped__,
}


class _Headers:
    """The request headers, looked up case-insensitively (the part of Django's HttpHeaders the
    data-plane views use)."""

    __slots__ = ("_values",)

    def __init__(self, raw):
        values: dict[str, str] = {}
        for name, value in raw:
            name = name.decode("latin1").lower()
            value = value.decode("latin1")
            # Repeated headers are joined with commas, as Django does.
            values[name] = f"{values[name]},{value}" if name in values else value
        self._values = values

    def get(self, name: str, default=None):
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._values

    def items(self):
        return self._values.items()


class DataPlaneRequest:
    """What the data-plane views read from a request (method, headers, body, query, client
    address, request id), built straight from the ASGI scope. Django's ASGIRequest builds a full
    META dictionary, stream and settings lookups per request, about a tenth of the fast lane's CPU."""

    __slots__ = ("method", "body", "headers", "META", "request_id", "_query", "_GET")

    def __init__(self, scope, body: bytes):
        self.method = scope["method"]
        self.body = body
        self.headers = _Headers(scope.get("headers", ()))
        client = scope.get("client")
        self.META = {"REMOTE_ADDR": client[0] if client else None, "REQUEST_METHOD": self.method}
        request_id = self.headers.get("x-request-id")
        if request_id is not None:
            self.META["HTTP_X_REQUEST_ID"] = request_id
        self.request_id = ""
        self._query = scope.get("query_string", b"")
        self._GET = None

    @property
    def GET(self):  # noqa: N802 - Django's name
        if self._GET is None:
            from django.http import QueryDict

            self._GET = QueryDict(self._query.decode("latin1"))
        return self._GET


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

    request = DataPlaneRequest(scope, b"".join(chunks))
    request_id = _assign(request)
    # The view runs in this task; a watcher cancels it if the client leaves first, so the view's
    # `finally` blocks release the slot and record the call.
    task = asyncio.current_task()
    state = {"responding": True}
    watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task, state))
    try:
        await _respond(view, request, request_id, send)
    except asyncio.CancelledError:
        # Swallow only the watcher's own cancellation (the client has gone: nothing to answer);
        # any other (a server shutting down) goes on.
        if not state.get("disconnected") or task.uncancel() > 0:
            raise
    finally:
        state["responding"] = False
        watcher.cancel()


async def _cancel_on_disconnect(receive, task, state) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if state["responding"]:
                state["responding"] = False
                state["disconnected"] = True
                task.cancel()
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
