"""SLA fixtures: synthetic request streams written straight into the usage log (as the gateway's
drainer would), a loopback webhook receiver and eager Celery for notifications."""

from __future__ import annotations

import math
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

COLUMNS = ["request_id", "created_at", "tenant_id", "model", "deployment_id", "region_id", "endpoint", "status",
           "status_code", "prompt_tokens", "completion_tokens", "cost", "currency", "latency_ms"]
STATUS_CODES = {"success": 200, "upstream_error": 502, "error": 500, "client_error": 400, "rate_limited": 429,
                "cancelled": 499}


def write_usage(records: list[dict]) -> int:
    """Insert usage rows with COPY (creating month partitions as needed)."""
    from apps.gateway import partitions

    if not records:
        return 0
    partitions.ensure_partition_for(r["created_at"] for r in records)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY gateway_usagerecord ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for r in records:
                status = r.get("status", "success")
                copy.write_row([
                    r.get("request_id") or uuid.uuid4().hex, r["created_at"], r["tenant_id"], r.get("model", "gpt-sim"),
                    r.get("deployment_id"), r.get("region_id", "us-east"), "generate", status,
                    STATUS_CODES[status], r.get("prompt_tokens", 20), r.get("completion_tokens", 40),
                    r.get("cost", "0.00010000"), "USD", r.get("latency_ms", 250.0),
                ])
    return len(records)


def stream(*, tenant_id: str, start: datetime, minutes: int, per_minute: int, error_ratio: float = 0.0,
           latency=None, seed: int = 7, model: str = "gpt-sim") -> list[dict]:
    """A synthetic request stream: per_minute requests each minute, the given share failing upstream
    (spread evenly, so every window sees the same ratio)."""
    rng = random.Random(seed)
    records = []
    n = 0
    for m in range(minutes):
        base = start + timedelta(minutes=m)
        for i in range(per_minute):
            n += 1
            failed = math.floor(n * error_ratio + 1e-9) > math.floor((n - 1) * error_ratio + 1e-9)
            records.append({
                "created_at": base + timedelta(seconds=(i * 60.0 / per_minute)),
                "tenant_id": tenant_id, "model": model,
                "status": "upstream_error" if failed else "success",
                "latency_ms": latency(rng) if latency else rng.uniform(100, 400),
            })
    return records


@pytest.fixture
def usage_writer(db):
    return write_usage


@pytest.fixture
def base_time():
    """An hour boundary a few days ago, so every window is whole and in the past."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(days=2)


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every POST (a tenant's webhook or Slack-style hook)."""

    def __init__(self):
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path="/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def eager_celery(settings, redis_client):
    from console.celery import app

    settings.SWITCHYARD_NOTIFY_ALLOW_PRIVATE = True
    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Reports are written under a throwaway MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
