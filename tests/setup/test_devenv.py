"""scripts/devenv.py run as a real process: private PostgreSQL and Redis under a temporary var dir."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "devenv.py"
DATABASE = "sy_devenv_test"
SERVER_NAMES = {"postgres.pid": "postgres", "redis.pid": "redis-server"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def process_name(pid: int) -> str | None:
    """The command name of a live process, None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat[stat.rindex(")") + 2] in "ZX":
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")]


@dataclass
class Sandbox:
    """A var dir and two free loopback ports for one test."""

    var: Path
    pg_port: int
    redis_port: int

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/{DATABASE}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def run(self, *args: str, **overrides: str) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
        env.update(SWITCHYARD_VAR_DIR=str(self.var), DATABASE_URL=self.database_url, REDIS_URL=self.redis_url)
        env.update(overrides)
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )

    def recorded_pids(self) -> dict[str, int]:
        pids = {}
        for file_name in SERVER_NAMES:
            marker = self.var / "run" / file_name
            if marker.exists():
                pids[file_name] = int(marker.read_text().split()[0])
        return pids


@pytest.fixture
def sandbox():
    # Under /tmp and world-searchable: the private PostgreSQL runs as the postgres account when we are root.
    root = Path(tempfile.mkdtemp(prefix="switchyard-devenv-"))
    root.chmod(0o755)
    box = Sandbox(var=root / "var", pg_port=free_port(), redis_port=free_port())
    try:
        yield box
    finally:
        box.run("stop")
        # Whatever `stop` missed (it may be the code under test) must not outlive the test.
        for file_name, pid in box.recorded_pids().items():
            if process_name(pid) == SERVER_NAMES[file_name]:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def exports(stdout: str) -> dict[str, str]:
    values = {}
    for line in stdout.splitlines():
        keyword, assignment = shlex.split(line)
        assert keyword == "export", line
        name, _, value = assignment.partition("=")
        values[name] = value
    return values


def test_services_start_reuse_and_stop_private_servers(sandbox):
    first = sandbox.run("services", "--print-env")
    assert first.returncode == 0, first.stderr
    assert exports(first.stdout) == {"DATABASE_URL": sandbox.database_url, "REDIS_URL": sandbox.redis_url}
    assert f"PostgreSQL: started a private server at 127.0.0.1:{sandbox.pg_port}" in first.stderr
    assert f"Redis: started a private server at 127.0.0.1:{sandbox.redis_port}" in first.stderr
    assert f"database '{DATABASE}' created" in first.stderr

    assert (sandbox.var / "postgres" / "data" / "PG_VERSION").exists()
    assert (sandbox.var / "log" / "postgres.log").exists()
    assert (sandbox.var / "log" / "redis.log").exists()
    pids = sandbox.recorded_pids()
    assert process_name(pids["postgres.pid"]) == "postgres"
    assert process_name(pids["redis.pid"]) == "redis-server"

    with psycopg.connect(sandbox.database_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (DATABASE,)
    client = redis.Redis.from_url(sandbox.redis_url, socket_timeout=5)
    try:
        assert client.ping() is True
        assert client.set("devenv-probe", "1") is True
    finally:
        client.close()

    second = sandbox.run("services", "--print-env")
    assert second.returncode == 0, second.stderr
    assert exports(second.stdout) == exports(first.stdout)
    assert "started" not in second.stderr
    assert f"PostgreSQL: using the private server at 127.0.0.1:{sandbox.pg_port}" in second.stderr
    assert f"Redis: using the private server at 127.0.0.1:{sandbox.redis_port}" in second.stderr
    assert f"database '{DATABASE}' exists" in second.stderr
    assert sandbox.recorded_pids() == pids

    stopped = sandbox.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"PostgreSQL: stopped the private server at 127.0.0.1:{sandbox.pg_port}" in stopped.stderr
    assert f"Redis: stopped the private server at 127.0.0.1:{sandbox.redis_port}" in stopped.stderr
    assert sandbox.recorded_pids() == {}
    assert process_name(pids["postgres.pid"]) is None
    assert process_name(pids["redis.pid"]) is None
    assert not answers(sandbox.pg_port)
    assert not answers(sandbox.redis_port)

    again = sandbox.run("stop")
    assert again.returncode == 0, again.stderr
    assert "PostgreSQL: no private server running" in again.stderr


def test_restart_keeps_the_cluster_and_env_file_is_written(sandbox):
    assert sandbox.run("services").returncode == 0
    assert sandbox.run("stop").returncode == 0

    env_file = sandbox.var / "services.env"
    restarted = sandbox.run("services", "--env-file", str(env_file))
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout == ""
    assert "creating a private cluster" not in restarted.stderr
    assert f"database '{DATABASE}' exists" in restarted.stderr
    assert exports(env_file.read_text()) == {"DATABASE_URL": sandbox.database_url, "REDIS_URL": sandbox.redis_url}


@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL"])
def test_unreachable_remote_address_is_an_error_and_starts_nothing(sandbox, variable):
    url = {
        "DATABASE_URL": "postgres://postgres@nonexistent.invalid:5432/x",
        "REDIS_URL": "redis://nonexistent.invalid:6379/0",
    }
    result = sandbox.run("services", "--print-env", **{variable: url[variable]})
    assert result.returncode == 1
    assert result.stdout == ""
    assert "nonexistent.invalid" in result.stderr
    assert "is not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr
    # The other service was on a free loopback port: deciding first means it was not started either.
    assert sandbox.recorded_pids() == {}
    assert not answers(sandbox.pg_port)
    assert not answers(sandbox.redis_port)


@pytest.mark.skipif(not shutil.which("pg_isready"), reason="only pg_isready tells a PostgreSQL from other listeners")
def test_a_port_taken_by_something_else_is_an_error(sandbox):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", sandbox.pg_port))
        squatter.listen()
        started = time.monotonic()
        result = sandbox.run("services")
    assert result.returncode == 1
    assert (
        f"something listens at 127.0.0.1:{sandbox.pg_port} (DATABASE_URL) but does not answer as PostgreSQL"
        in result.stderr
    )
    assert time.monotonic() - started < 60
    assert sandbox.recorded_pids() == {}
