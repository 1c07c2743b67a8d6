"""With a real Celery worker: the scheduled tasks roll up a burning request stream, evaluate it,
and the worker delivers the page to the tenant's webhook once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from apps.sla.rollups import floor_minute

from .conftest import stream

ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict:
    env = dict(os.environ)
    db = connection.settings_dict
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["SWITCHYARD_NOTIFY_ALLOW_PRIVATE"] = "true"
    env.pop("DATABASE_TEST_NAME", None)
    return env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_rolls_up_evaluates_and_delivers_the_page_once(personas, usage_writer, receiver, redis_client):
    from apps.core.notifications import create_channel
    from apps.sla.models import AlertEvent
    from apps.sla.tasks import evaluate_sla, rollup_usage

    create_channel(tenant_id=personas.tenant_a.pk, kind="slack", name="ops", target=receiver.url("/slack"))
    create_channel(tenant_id=personas.tenant_a.pk, kind="webhook", name="pager", target=receiver.url("/hook"))
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=59)
    usage_writer(stream(tenant_id=personas.tenant_a.pk, start=start, minutes=60, per_minute=100, error_ratio=0.015))

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "console", "worker", "--pool=solo", "--concurrency=1",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"],
        cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert rollup_usage.delay(lookback_minutes=70).get(timeout=90)["minutes"] >= 60
        assert evaluate_sla.delay().get(timeout=60)["tenants"] == 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(receiver.requests) < 2:
            assert worker.poll() is None
            time.sleep(0.2)
        evaluate_sla.delay().get(timeout=60)  # still burning: the state machine sends nothing new
        time.sleep(2)
    finally:
        worker.terminate()
        log = worker.communicate(timeout=30)[0]

    webhook = [json.loads(r["body"]) for r in receiver.requests if r["path"] == "/hook"]
    slack = [json.loads(r["body"]) for r in receiver.requests if r["path"] == "/slack"]
    fast = [b for b in webhook if "2% in 1 hour" in b["title"]]
    assert len(fast) == 1, log[-3000:]
    assert fast[0]["severity"] == "critical" and fast[0]["link"].endswith("/sla/tenant-a/")
    assert any("2% in 1 hour" in b["text"] for b in slack)
    assert AlertEvent.objects.filter(tenant=personas.tenant_a, rule="burn_fast", kind="firing").count() == 1
