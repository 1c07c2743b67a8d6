"""OpenTelemetry tracing: a server span per request, W3C trace context carried through to the upstream.

`TraceContextMiddleware` wraps the ASGI application. For each HTTP request it continues the caller's trace from
its `traceparent`/`tracestate` headers (or starts one), opens a server span, and rewrites the request's
`traceparent` to name that span, so whatever the view forwards upstream (the gateway's providers copy the
request's traceparent) makes the upstream's work a child of the gateway's span in the same trace.

Spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard OTEL_* variables,
e.g. OTEL_EXPORTER_OTLP_HEADERS or OTEL_BSP_SCHEDULE_DELAY, apply). Without it no SDK span is made at all (it
would cost tens of microseconds per request for nothing): the upstream still gets a traceparent with a fresh
span id in the caller's trace, so the trace connects end to end. No request or response body, header value or query string
is put on a span: prompts and keys never reach the tracing backend.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading

from django.conf import settings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_provider: TracerProvider | None = None
propagator = TraceContextTextMapPropagator()
_TRACE_HEADERS = (b"traceparent", b"tracestate")


def get_provider() -> TracerProvider:
    """This process's tracer provider, made once; it exports only when an OTLP endpoint is configured."""
    global _provider
    if _provider is None:
        with _lock:
            if _provider is None:
                provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
                endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
                if endpoint:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                    provider.add_span_processor(BatchSpanProcessor(
                        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
                    logger.info("exporting traces over OTLP", extra={"endpoint": endpoint})
                _provider = provider
    return _provider


_tracer = None


def get_tracer():
    # Made once: the SDK builds a new tracer object on every get_tracer() call.
    global _tracer
    if _tracer is None:
        _tracer = get_provider().get_tracer("switchyard")
    return _tracer


def shutdown() -> None:
    """Flush queued spans (called at process exit by the SDK too)."""
    if _provider is not None:
        _provider.shutdown()


_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _continued(headers) -> list:
    """The request headers with a traceparent naming a new span of the caller's trace (or of a new trace)."""
    incoming = None
    out = []
    for name, value in headers:
        if name == b"traceparent":
            incoming = value
        else:
            out.append((name, value))
    match = _TRACEPARENT.match(incoming.strip().lower()) if incoming else None
    span_id = secrets.token_hex(8)
    if match and match.group(1) != b"0" * 32 and match.group(2) != b"0" * 16:
        value = b"00-" + match.group(1) + b"-" + span_id.encode() + b"-" + match.group(3)
    else:
        out = [(k, v) for k, v in out if k != b"tracestate"]  # tracestate belongs to the trace it came with
        value = f"00-{secrets.token_hex(16)}-{span_id}-01".encode()
    out.append((b"traceparent", value))
    return out


class TraceContextMiddleware:
    """ASGI middleware: one server span per HTTP request; the request's traceparent now names that span."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
            # Nothing would be exported: skip the SDK (its span costs tens of microseconds) and only hand the
            # upstream a fresh span id in the caller's trace, so the trace still connects end to end.
            await self.app({**scope, "headers": _continued(scope.get("headers", ()))}, receive, send)
            return
        carrier = {}
        for name, value in scope.get("headers", ()):
            if name in _TRACE_HEADERS:
                carrier[name.decode("latin1")] = value.decode("latin1")
        parent = propagator.extract(carrier)
        method = scope.get("method", "")
        path = scope.get("path", "")
        with get_tracer().start_as_current_span(
            f"{method} {path}", context=parent, kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path, "url.scheme": scope.get("scheme", "http")},
        ) as span:
            outgoing: dict[str, str] = {}
            propagator.inject(outgoing)
            headers = [(k, v) for k, v in scope.get("headers", ()) if k not in _TRACE_HEADERS]
            headers += [(k.encode("latin1"), v.encode("latin1")) for k, v in outgoing.items()]

            async def send_with_status(message):
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app({**scope, "headers": headers}, receive, send_with_status)
