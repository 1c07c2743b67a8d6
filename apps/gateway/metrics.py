"""Prometheus metrics of the data plane and the /metrics view.

Multi-process: uvicorn runs several workers, each with its own memory, and a scrape reaches any
one of them. So every process writes its values to files in one directory and /metrics adds them
up: PROMETHEUS_MULTIPROC_DIR if set, else SWITCHYARD_METRICS_DIR (default
$SWITCHYARD_DATA_DIR/prometheus; off under tests, where each process keeps its own registry).
Counters are totals since the directory was created; empty it when deploying, before the workers
start, to begin again from zero.

The hot path calls `observe_request` once per request: label children are cached in a dict so a
call costs a few microseconds, not the ~10 labels() lookups it would otherwise take.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import values as _values


def _multiproc_dir() -> str | None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or getattr(settings, "SWITCHYARD_METRICS_DIR", None)
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus_client picks file-backed values from the environment when first imported; this
    # module may set it later than that, so pick again before the metrics below are created.
    _values.ValueClass = _values.get_value_class()
    return str(directory)


MULTIPROC_DIR = _multiproc_dir()

# The *_created series double the exposition for no use here.
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# In multi-process mode the metrics must not be registered in the default registry (its values
# would be this process's only); the collector in metrics_view reads every process's files.
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "switchyard_gateway_requests", "Gateway requests by tenant, model and HTTP status.",
    ["tenant", "model", "status"], registry=REGISTRY,
)
ERRORS = Counter(
    "switchyard_gateway_errors", "Gateway requests answered with an error status (4xx/5xx).",
    ["tenant", "model", "status"], registry=REGISTRY,
)
LATENCY = Histogram(
    "switchyard_gateway_request_latency_seconds", "Whole-request latency seen by the client.",
    ["tenant", "model"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)
TTFT = Histogram(
    "switchyard_gateway_time_to_first_token_seconds", "Time to the first streamed token (or the answer).",
    ["tenant", "model"], buckets=TTFT_BUCKETS, registry=REGISTRY,
)
TOKENS = Counter(
    "switchyard_gateway_tokens", "Tokens metered, by direction (input or output).",
    ["tenant", "model", "direction"], registry=REGISTRY,
)
COST = Counter(
    "switchyard_gateway_cost", "Cost metered in the price's currency (priced requests only).",
    ["tenant", "model"], registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "switchyard_gateway_quota_refusals", "Requests refused by a quota, by the limit that refused.",
    ["tenant", "reason"], registry=REGISTRY,
)
# Labelled so that, like every metric here, it creates its value (and in multi-process mode its
# file) only when first used: processes that serve no traffic leave nothing behind.
REDIS_OUTAGES = Counter(
    "switchyard_gateway_quota_backend_unavailable",
    "Admissions that found Redis unreachable, by outcome: refused (503) or degraded (admitted locally).",
    ["outcome"], registry=REGISTRY,
)

_children: dict[tuple, tuple] = {}
_refusal_children: dict[tuple, object] = {}


def _request_children(tenant_id: str, model: str, status: str) -> tuple:
    key = (tenant_id, model, status)
    found = _children.get(key)
    if found is None:
        found = (
            REQUESTS.labels(tenant_id, model, status),
            ERRORS.labels(tenant_id, model, status) if int(status) >= 400 else None,
            LATENCY.labels(tenant_id, model),
            TTFT.labels(tenant_id, model),
            TOKENS.labels(tenant_id, model, "input"),
            TOKENS.labels(tenant_id, model, "output"),
            COST.labels(tenant_id, model),
        )
        _children[key] = found
    return found


def observe_request(tenant_id, model, status_code, latency_seconds, ttft_seconds=None, tokens_in=0, tokens_out=0,
                    cost=None) -> None:
    """Count one finished gateway request. `cost` is a Decimal (or None when unpriced)."""
    requests, errors, latency, ttft, tok_in, tok_out, cost_child = _request_children(
        str(tenant_id or "-"), str(model or "-"), str(int(status_code))
    )
    requests.inc()
    if errors is not None:
        errors.inc()
    latency.observe(latency_seconds)
    if ttft_seconds is not None:
        ttft.observe(ttft_seconds)
    if tokens_in:
        tok_in.inc(tokens_in)
    if tokens_out:
        tok_out.inc(tokens_out)
    if cost:
        cost_child.inc(float(cost))


def count_quota_refusal(tenant_id, reason: str) -> None:
    key = (str(tenant_id), reason)
    child = _refusal_children.get(key)
    if child is None:
        child = _refusal_children[key] = QUOTA_REFUSALS.labels(*key)
    child.inc()


def count_redis_outage(outcome: str = "refused") -> None:
    REDIS_OUTAGES.labels(outcome).inc()


def collect() -> bytes:
    """The exposition text for every process (multi-process mode) or this one."""
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@never_cache
def metrics_view(request):
    """GET /metrics. With SWITCHYARD_METRICS_TOKEN set, scrapers must send it as a bearer token."""
    token = getattr(settings, "SWITCHYARD_METRICS_TOKEN", None)
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("metrics need the scrape token\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(collect(), content_type=CONTENT_TYPE_LATEST)
