"""Gateway benchmark: the simulator directly and through Switchyard (uvicorn, 2 workers, real
Postgres and Redis, with authentication, quotas, metering and audit all on).

Measures, in one run: latency p50/p99 and requests/s at 1, 10 and 50 concurrent clients, direct,
through a bare pass-through proxy (bench/passthrough.py: the same server and upstream client with
no authentication, quotas or metering: the floor for any Python proxy here) and through the gateway
(added latency = through - direct); 1,000 concurrent requests against a 1-second upstream (errors,
p99) the same three ways; RSS of each server process; and that every answered request got its
usage record. Load comes from `hey` (Go, cheap on CPU) on the same machine.

Run: ``python -m bench.gateway_bench`` (``make bench`` calls it). Writes bench/results/gateway.json.
Uses its own database (BENCH_DATABASE_URL, default sy_bench_gateway) and Redis prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gateway.json"
RESULTS_PROCESS_DRAINER = ROOT / "bench" / "results" / "gateway-drainer-process.json"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/sy_bench_gateway"
PREFIX = "sybench:gw:"
BODY = {"model": "sim-small", "messages": [{"role": "user", "content": "Benchmark prompt: say something short."}],
        "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_environment(database_url: str) -> dict:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url,
        "SWITCHYARD_REDIS_PREFIX": PREFIX,
        "SWITCHYARD_ENV": "development",
        "DJANGO_DEBUG": "false",
        "SWITCHYARD_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    return env


def ensure_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_world(sim_url: str, slow_sim_url: str) -> str:
    """Tenant, region, deployments (fast and 1-second upstream), price, and an API key."""
    import django

    django.setup()
    from decimal import Decimal

    from django.core.management import call_command

    from apps.core.redis import get_redis
    from apps.gateway import services
    from apps.gateway.models import ApiKey, ModelPrice
    from apps.regions.models import Deployment, Region
    from apps.tenants.models import Tenant

    call_command("migrate", verbosity=0, interactive=False)
    for name in get_redis().scan_iter(match=PREFIX + "*", count=1000):
        get_redis().delete(name)
    with django.db.connection.cursor() as cursor:
        cursor.execute("TRUNCATE gateway_usagerecord")
    tenant, _ = Tenant.objects.update_or_create(pk="bench", defaults={
        "name": "Bench", "requests_per_minute": 10_000_000, "requests_per_day": 1_000_000_000,
        "tokens_per_month": 10**15, "max_concurrent": 100_000, "status": "active", "allowed_models": [],
        "store_content": False,
    })
    region, _ = Region.objects.get_or_create(pk="us-east", defaults={"name": "US East", "group": "us"})
    Deployment.objects.filter(name__startswith="bench-").delete()
    Deployment.objects.create(name="bench-sim-small", model="sim-small", provider="simulator", upstream_model="sim-small",
                              base_url=sim_url, api_key="sk-bench", region=region, timeout_seconds=30)
    Deployment.objects.create(name="bench-sim-slow", model="sim-slow", provider="simulator", upstream_model="sim-small",
                              base_url=slow_sim_url, api_key="sk-bench", region=region, timeout_seconds=30)
    if not ModelPrice.objects.filter(model="sim-small").exists():
        services.set_model_price(actor=None, model="sim-small", input_per_1k=Decimal("0.15"), output_per_1k=Decimal("0.6"))
    for old in ApiKey.objects.filter(tenant=tenant, revoked_at=None):
        services.revoke_api_key(actor=None, api_key=old)
    _, secret = services.create_api_key(actor=None, tenant=tenant, name="bench")
    return secret


def usage_count() -> int:
    from django.db import connection

    from apps.gateway import usage

    usage.drain_all()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM gateway_usagerecord WHERE tenant_id = 'bench' AND status = 'success'")
        return cursor.fetchone()[0]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def wait_http_post(url: str, body: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    data = json.dumps(body).encode()
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def run_hey(url: str, *, requests: int, concurrency: int, body_file: str, key: str | None,
            timeout: int = 20) -> dict:
    cmd = ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
           "-D", body_file, "-t", str(timeout)]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    result = {"requests": requests, "concurrency": concurrency}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(rps.group(1)) if rps else 0.0
    for pct in ("50", "90", "99"):
        match = re.search(rf"\s{pct}% in ([\d.]+) secs", out)
        result[f"p{pct}_ms"] = float(match.group(1)) * 1000 if match else None
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    result["status"] = {code: int(n) for code, n in codes.items()}
    # Anything but a 200 is an error: other statuses and transport errors (timeouts, resets).
    result["errors"] = requests - result["status"].get("200", 0)
    return result


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per step (a smoke run)")
    parser.add_argument(
        "--drainer",
        choices=["server", "process"],
        default="server",
        help="store usage records from inside the server processes (default) or from one "
        "separate `manage.py drain_usage --follow` process",
    )
    args = parser.parse_args(argv)
    if not shutil.which("hey"):
        print("hey is required (apt-get install hey)", file=sys.stderr)
        return 2

    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    env = prepare_environment(database_url)
    env["SWITCHYARD_USAGE_DRAIN_IN_SERVER"] = "true" if args.drainer == "server" else "false"
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "SWITCHYARD_REDIS_PREFIX", "SWITCHYARD_ENV", "DJANGO_DEBUG")}
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    sys.path.insert(0, str(ROOT))
    ensure_database(database_url)

    from bench.simulator import SimulatorProcess

    scale = 0.25 if args.quick else 1.0
    steps = [(1, int(2000 * scale)), (10, int(6000 * scale)), (50, int(10000 * scale))]
    report: dict = {
        "machine": {"cpus": os.cpu_count()},
        "drainer": args.drainer,
        "steps": [],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    with (
        SimulatorProcess(name="bench-sim", latency_ms=0, output_tokens=16) as sim,
        SimulatorProcess(name="bench-slow", latency_ms=1000, output_tokens=16) as slow,
    ):
        key = setup_world(sim.url, slow.url)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "apps.gateway.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        gateway = f"http://127.0.0.1:{port}"
        # The baseline proxy: the same server and upstream client with nothing else (bench/passthrough.py).
        passthrough_port = free_port()
        passthrough_env = {**env, "PASSTHROUGH_UPSTREAMS": json.dumps(
            {"sim-small": [sim.url, "sim-small"], "sim-slow": [slow.url, "sim-small"]})}
        passthrough_server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.passthrough:application", "--host", "127.0.0.1", "--port",
             str(passthrough_port), "--workers", "2", "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
            cwd=ROOT, env=passthrough_env, start_new_session=True,
        )
        passthrough = f"http://127.0.0.1:{passthrough_port}"
        drainer = None
        if args.drainer == "process":
            drainer = subprocess.Popen(
                [sys.executable, "manage.py", "drain_usage", "--follow"], cwd=ROOT, env=env, start_new_session=True
            )
        try:
            wait_http(gateway + "/healthz")
            wait_http_post(passthrough + "/v1/chat/completions", BODY)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump(BODY, handle)
                body_file = handle.name
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump({**BODY, "model": "sim-slow"}, handle)
                slow_body = handle.name
            # Warm up every path (connections, routing table, caches).
            run_hey(sim.url + "/v1/chat/completions", requests=500, concurrency=10, body_file=body_file, key="sk")
            run_hey(passthrough + "/v1/chat/completions", requests=500, concurrency=10, body_file=body_file, key=None)
            warm = run_hey(
                gateway + "/v1/chat/completions", requests=1000, concurrency=10, body_file=body_file, key=key
            )

            answered = warm["status"].get("200", 0)
            for clients, requests in steps:
                direct = run_hey(sim.url + "/v1/chat/completions", requests=requests, concurrency=clients,
                                 body_file=body_file, key="sk")
                bare = run_hey(passthrough + "/v1/chat/completions", requests=requests, concurrency=clients,
                               body_file=body_file, key=None)
                through = run_hey(gateway + "/v1/chat/completions", requests=requests, concurrency=clients,
                                  body_file=body_file, key=key)
                answered += through["status"].get("200", 0)
                step = {
                    "clients": clients, "direct": direct, "passthrough": bare, "through": through,
                    "added_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
                    "added_p99_ms": round(through["p99_ms"] - direct["p99_ms"], 3),
                    "passthrough_added_p50_ms": round(bare["p50_ms"] - direct["p50_ms"], 3),
                    "rps_ratio_to_passthrough": round(through["rps"] / bare["rps"], 3) if bare["rps"] else None,
                }
                report["steps"].append(step)
                print(f"{clients:>3} clients: direct p50 {direct['p50_ms']:.2f} ms p99 {direct['p99_ms']:.2f} ms "
                      f"{direct['rps']:.0f} req/s | passthrough p50 {bare['p50_ms']:.2f} ms {bare['rps']:.0f} req/s "
                      f"| through p50 {through['p50_ms']:.2f} ms p99 {through['p99_ms']:.2f} ms "
                      f"{through['rps']:.0f} req/s errors {through['errors']} | added p50 {step['added_p50_ms']:.2f} ms "
                      f"p99 {step['added_p99_ms']:.2f} ms", flush=True)

            pids = worker_pids(server.pid)
            report["rss_mib_after_load"] = {str(pid): round(rss_mib(pid), 1) for pid in pids}

            # 1,000 requests in flight at once against a 1-second upstream: the simulator directly
            # (what the load generator and the simulator cost on this machine's cores), through the
            # bare pass-through proxy, then through the gateway.
            slow_n = 1000 if not args.quick else 500
            baselines = {}
            for name, url, body, auth in (("direct", slow.url, body_file, "sk"),
                                          ("passthrough", passthrough, slow_body, None)):
                baselines[name] = run_hey(url + "/v1/chat/completions", requests=slow_n * 2, concurrency=slow_n,
                                          body_file=body, key=auth, timeout=30)
                report[f"in_flight_1000_{name}"] = baselines[name]
                print(f"{slow_n} in flight, 1 s upstream, {name}: p50 {baselines[name]['p50_ms']:.0f} ms "
                      f"p99 {baselines[name]['p99_ms']:.0f} ms errors {baselines[name]['errors']}", flush=True)
            held_direct = baselines["direct"]
            held = run_hey(gateway + "/v1/chat/completions", requests=slow_n * 2, concurrency=slow_n,
                           body_file=slow_body, key=key, timeout=30)
            answered += held["status"].get("200", 0)
            held["added_p50_ms"] = round(held["p50_ms"] - held_direct["p50_ms"], 3)
            held["added_p99_ms"] = round(held["p99_ms"] - held_direct["p99_ms"], 3)
            report["in_flight_1000"] = held
            report["rss_mib_with_1000_in_flight"] = {str(pid): round(rss_mib(pid), 1) for pid in pids}
            if drainer is not None:
                report["rss_mib_drainer"] = round(rss_mib(drainer.pid), 1)
            print(
                f"{slow_n} in flight, 1 s upstream, through: p50 {held['p50_ms']:.0f} ms p99 {held['p99_ms']:.0f} ms "
                f"{held['rps']:.0f} req/s errors {held['errors']} status {held['status']} | added p50 "
                f"{held['added_p50_ms']:.0f} ms p99 {held['added_p99_ms']:.0f} ms",
                flush=True,
            )
            print(f"RSS per server process (MiB): {report['rss_mib_with_1000_in_flight']}", flush=True)

            deadline = time.monotonic() + 60
            stored = usage_count()
            while stored < answered and time.monotonic() < deadline:
                time.sleep(0.5)
                stored = usage_count()
            report["usage_records"] = {"answered_200": answered, "stored": stored}
            print(f"usage records: {stored} stored for {answered} answered (warm-up included)", flush=True)
            report["load_average_during_run"] = os.getloadavg()
        finally:
            if drainer is not None:
                drainer.send_signal(signal.SIGINT)
                try:
                    drainer.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    drainer.kill()
            for process in (server, passthrough_server):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()

    path = RESULTS if args.drainer == "server" else RESULTS_PROCESS_DRAINER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
