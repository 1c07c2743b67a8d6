"""A real Switchyard for tests: uvicorn in a subprocess on a free loopback port, pointed at the
test database and this test process's Redis namespace."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveGateway:
    def __init__(self, *, database_name: str, workers: int = 1, env: dict | None = None,
                 app: str = "apps.gateway.asgi:application"):
        from django.conf import settings

        self.port = free_port()
        self.workers = workers
        self.app = app
        db = settings.DATABASES["default"]
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{database_name}",
            "SWITCHYARD_REDIS_PREFIX": settings.REDIS_KEY_PREFIX,
            "SWITCHYARD_ENV": "test",
            "DJANGO_DEBUG": "false",
            "SWITCHYARD_USAGE_FLUSH_MS": "100",
            "ROUTER_VERSION_CHECK_MS": "0",
            "SWITCHYARD_ROUTER_VERSION_CHECK_MS": "0",
            "PYTHONPATH": str(ROOT),
            # Tests flush the keyring tables between tests; a cached data key would outlive them.
            "SWITCHYARD_KEYS_CACHE_SECONDS": "0",
        })
        self.env.pop("PYTEST_CURRENT_TEST", None)
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / "var" / f"test-gateway-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveGateway:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not start: {self.log_text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            self.log_path.unlink()
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
