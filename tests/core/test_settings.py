"""Production settings fail fast on missing or weak secrets; `check --deploy` passes when set."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STRONG = {
    "SWITCHYARD_ENV": "production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "SWITCHYARD_KEK": base64.b64encode(os.urandom(32)).decode(),
    "SWITCHYARD_AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
    "DJANGO_ALLOWED_HOSTS": "switchyard.example.com",
    "DJANGO_DEBUG": "false",
}


def _manage(args, env_overrides, drop=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SWITCHYARD_"))}
    env.update(env_overrides)
    for name in drop:
        env.pop(name, None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_passes_with_production_settings():
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], STRONG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_secret_key_fails_with_a_clear_message():
    result = _manage(["check"], STRONG, drop=["DJANGO_SECRET_KEY"])
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and "required in production" in result.stderr


def test_weak_secret_key_is_refused():
    result = _manage(["check"], {**STRONG, "DJANGO_SECRET_KEY": "short"})
    assert result.returncode != 0 and "too weak" in result.stderr


def test_missing_kek_is_refused_in_production():
    result = _manage(["check"], STRONG, drop=["SWITCHYARD_KEK"])
    assert result.returncode != 0 and "SWITCHYARD_KEK" in result.stderr


def test_secret_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text(STRONG["DJANGO_SECRET_KEY"])
    env = {**STRONG, "DJANGO_SECRET_KEY_FILE": str(key_file)}
    env.pop("DJANGO_SECRET_KEY")
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
