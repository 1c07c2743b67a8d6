"""W3C trace context through a real gateway process to a real simulator, and spans exported over OTLP/HTTP."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from bench.simulator import SimulatorProcess
from tests.gateway.live import LiveGateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class OtlpCollector:
    """A loopback OTLP/HTTP receiver: keeps every exported span (name, trace id, span id, parent id)."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        spans = self.spans = []
        self.paths = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                paths.append(self.path)
                message = ExportTraceServiceRequest.FromString(body)
                for resource_spans in message.resource_spans:
                    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            spans.append({"name": span.name, "trace_id": span.trace_id.hex(),
                                          "span_id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                                          "service": service.get("service.name"),
                                          "attributes": {a.key for a in span.attributes}})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    c = OtlpCollector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(name="trace-sim", output_tokens=4) as process:
        yield process


def test_the_middleware_continues_the_callers_trace_and_hands_its_own_span_downstream():
    from apps.core.tracing import TraceContextMiddleware

    seen = {}

    async def app(scope, receive, send):
        seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def call(headers):
        sent = []

        async def send(message):
            sent.append(message)

        await TraceContextMiddleware(app)({"type": "http", "method": "POST", "path": "/api/v1/generate",
                                           "headers": headers}, None, send)
        return sent

    async_to_sync(call)([(b"traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01".encode()), (b"x-other", b"kept")])
    version, trace_id, span_id, flags = seen["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != CALLER_SPAN and len(span_id) == 16
    assert seen["x-other"] == "kept"

    seen.clear()
    async_to_sync(call)([])
    assert len(seen["traceparent"].split("-")[1]) == 32  # a new trace starts when the caller sent none


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_traceparent_reaches_the_upstream_as_a_child_of_the_gateways_exported_span(personas, sim, collector):
    from apps.gateway.services import create_api_key
    from apps.keys.services import clear_key_cache
    from apps.regions.models import Deployment, Region

    clear_key_cache()
    region = Region.objects.create(id="us-east", name="US East", group="us")
    Deployment.objects.create(name="small@us", model="sim-small", provider="simulator", base_url=sim.url,
                              api_key="sk", region=region)
    _, key = create_api_key(actor=personas.a_admin, tenant=personas.tenant_a, name="t", user=personas.a_member)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_SERVICE_NAME": "switchyard-test"}
    try:
        with LiveGateway(database_name=connection.settings_dict["NAME"], env=env) as gateway:
            sim.clear_requests()
            response = httpx.post(gateway.url + "/api/v1/generate", timeout=20, json={
                "prompt": "trace me", "model": "sim-small"}, headers={
                "Authorization": f"Bearer {key}", "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
            assert response.status_code == 200, response.text
            upstream = sim.requests()[-1]["headers"]["traceparent"]
            _, trace_id, parent_id, _ = upstream.split("-")
            assert trace_id == TRACE_ID
            assert parent_id != CALLER_SPAN

            import time

            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(s["trace_id"] == TRACE_ID for s in collector.spans):
                time.sleep(0.1)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE gateway_usagerecord")
    span = next(s for s in collector.spans if s["trace_id"] == TRACE_ID)
    assert collector.paths[0] == "/v1/traces"
    assert span["name"] == "POST /api/v1/generate"
    assert span["parent"] == CALLER_SPAN
    assert span["span_id"] == parent_id  # the upstream's parent is the gateway's span
    assert span["service"] == "switchyard-test"
    assert "http.response.status_code" in span["attributes"]


def test_without_an_otlp_endpoint_nothing_is_exported(settings):
    from apps.core import tracing

    settings.OTEL_EXPORTER_OTLP_ENDPOINT = None
    saved, tracing._provider = tracing._provider, None
    try:
        provider = tracing.get_provider()
        assert provider._active_span_processor._span_processors == ()
    finally:
        tracing._provider = saved


def test_a_malformed_traceparent_starts_a_new_trace_and_drops_the_foreign_tracestate():
    from apps.core.tracing import _continued

    headers = _continued([(b"traceparent", b"00-zz-not-a-trace"), (b"tracestate", b"vendor=1"), (b"a", b"b")])
    names = [k for k, _ in headers]
    assert b"tracestate" not in names and (b"a", b"b") in headers
    value = dict(headers)[b"traceparent"].decode()
    assert len(value.split("-")[1]) == 32 and value.endswith("-01")
    kept = _continued([(b"traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-00".encode()), (b"tracestate", b"v=1")])
    assert dict(kept)[b"tracestate"] == b"v=1"
    _, trace_id, span_id, flags = dict(kept)[b"traceparent"].decode().split("-")
    assert (trace_id, flags) == (TRACE_ID, "00") and span_id != CALLER_SPAN
