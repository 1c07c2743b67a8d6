"""/healthz and /readyz, including readiness failing with the name of what is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_postgres_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


def _readyz_with(env_overrides: dict) -> dict:
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz');"
        "print(json.dumps({'status': r.status_code, 'body': json.loads(r.content)}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "SWITCHYARD_ENV": "test", **env_overrides}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_down():
    result = _readyz_with({"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": _test_database_url()})
    assert result["status"] == 503
    assert result["body"]["down"] == ["redis"]


def test_readyz_names_postgres_when_it_is_down():
    result = _readyz_with({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing"})
    assert result["status"] == 503
    assert result["body"]["down"] == ["postgres"]
