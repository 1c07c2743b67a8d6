"""SLA benchmark: dashboards over 10 million requests' worth of rollups (30 days, 50 tenants), and
rollup throughput on raw usage records through the real rollup code.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sy_sla_bench .venv/bin/python bench/sla_bench.py
    ... bench/sla_bench.py --scale 0.1     # 3 days instead of 30 (same tenants, a tenth of the records)

Dashboards read rollups only, so the 10M records are generated as their per-minute rollups (with
sparse latency histograms) directly in Postgres, and the hour rollups are then built from them by
the real hour-rollup statement. A smaller set of raw usage records goes through the real minute
rollup (apps.sla.rollups.rollup_range) to measure rollup throughput. Render times are measured with
Django's test client (the whole view, template and Plotly figure JSON, in process) and printed with
p50/p95 and their ratio to a trivial page (/healthz) measured in the same run.

The database named by DATABASE_URL is created if missing and its SLA tables and bench tenants are
emptied first: point it at a scratch database (its name must contain "bench").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

TENANTS = 50
DAYS = 30
RECORDS = 10_000_000


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to run against {name!r}: the database name must contain 'bench'")
    admin = psycopg.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
                            user=parsed.username or "postgres", dbname="postgres", autocommit=True)
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
        admin.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def timed(fn, runs: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall-clock ms and this process's CPU ms per call (the CPU figure does not move with the
    other work on a shared machine; Postgres' own CPU is in the wall time only)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def reset(tenant_ids: list[str]) -> None:
    from django.db import connection

    from apps.tenants.models import Tenant

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE sla_minuterollup, sla_hourrollup, sla_tenanthourrollup, sla_slastatus, sla_alertstate, sla_alertevent, "
            "sla_slaviolation"
        )
        cursor.execute("DELETE FROM gateway_usagerecord WHERE tenant_id LIKE 'bench-%%'")
    Tenant.objects.filter(id__startswith="bench-").delete()
    for index, tenant_id in enumerate(tenant_ids):
        Tenant.objects.create(id=tenant_id, name=f"Bench tenant {index:02d}",
                              tier=["free", "pro", "enterprise"][index % 3])


# The requests of one tenant-minute: 4 or 5 (about 4.6 on average, so 50 tenants over 30 days make
# ~10M); tenants whose index is a multiple of 10 fail 2 % of requests, the rest 0.05 %.
# Latency: three sparse buckets around a per-tenant base (200 ms .. ~700 ms).
_GENERATE_SQL = """
INSERT INTO sla_minuterollup (tenant_id, model, deployment_id, minute, requests, successes, client_errors,
    rate_limited, upstream_errors, gateway_errors, cancelled, prompt_tokens, completion_tokens, cost, unpriced,
    latency_sum_ms, hist_buckets, hist_counts)
SELECT t.id, 'model-' || (t.n %% 3), '', m, g.req, g.req - g.err, 0, 0, g.err, 0, 0, g.req * 300, g.req * 200,
       g.req * 0.0021, 0, (g.req - g.err) * g.lat,
       ARRAY[g.b, g.b + 8 + g.j, g.b + 60 + 2 * g.j]::smallint[], ARRAY[g.req - g.err - 2, 1, 1]
FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM tenants_tenant WHERE id LIKE 'bench-%%') AS t
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute', interval '1 minute') AS m
CROSS JOIN LATERAL (
    SELECT r.req, r.err, r.j, 268 + (t.n * 1.3)::int AS b, power(1.02, 268 + (t.n * 1.3)::int) * 1.1 AS lat
    FROM (SELECT 4 + (random() < 0.63)::int AS req,
                 (random() < CASE WHEN t.n %% 10 = 0 THEN 0.09 ELSE 0.0023 END)::int AS err,
                 (random() * 6)::int AS j, m AS mm) AS r
) AS g
"""


def generate_rollups(days: float, tenant_ids: list[str], now: datetime) -> dict:
    from django.db import connection

    from apps.sla.rollups import _HOUR_SQL, _TENANT_HOUR_SQL, floor_hour

    end = floor_hour(now) + timedelta(hours=1)
    start = end - timedelta(days=days)
    chunk = timedelta(days=1)
    t0 = time.perf_counter()
    cursor_start = start
    with connection.cursor() as cursor:
        while cursor_start < end:
            cursor.execute(_GENERATE_SQL, {"start": cursor_start, "end": min(end, cursor_start + chunk)})
            cursor_start += chunk
        generated = time.perf_counter() - t0
        t1 = time.perf_counter()
        cursor_start = start
        while cursor_start < end:
            window = {"tenants": tenant_ids, "start": cursor_start, "end": min(end, cursor_start + chunk)}
            cursor.execute(_HOUR_SQL, window)
            cursor.execute(_TENANT_HOUR_SQL, window)
            cursor_start += chunk
        hours = time.perf_counter() - t1
        cursor.execute("ANALYZE sla_minuterollup")
        cursor.execute("ANALYZE sla_hourrollup")
        cursor.execute("ANALYZE sla_tenanthourrollup")
        cursor.execute("SELECT count(*), COALESCE(sum(requests), 0) FROM sla_minuterollup")
        minute_rows, requests = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM sla_hourrollup")
        hour_rows = cursor.fetchone()[0]
    return {"minute_rows": minute_rows, "hour_rows": hour_rows, "requests": int(requests),
            "generate_s": generated, "hour_rollup_s": hours}


def raw_rollup_run(records: int, tenant_ids: list[str], now: datetime) -> dict:
    """COPY `records` raw usage records into the last 60 minutes, then time the real minute+hour rollup."""
    import random

    from django.db import connection

    from apps.gateway import partitions
    from apps.sla.rollups import floor_minute, rollup_range

    rng = random.Random(5)
    end = floor_minute(now)
    start = end - timedelta(minutes=60)
    partitions.ensure_partition_for([start, end])
    statuses = ["success"] * 97 + ["upstream_error", "client_error", "rate_limited"]
    columns = ["request_id", "created_at", "tenant_id", "model", "region_id", "endpoint", "status", "status_code",
               "prompt_tokens", "completion_tokens", "cost", "currency", "latency_ms"]
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY gateway_usagerecord ({', '.join(columns)}) FROM STDIN") as copy:
            for index in range(records):
                status = statuses[index % 100]
                copy.write_row([uuid.uuid4().hex, start + timedelta(seconds=rng.random() * 3600),
                                tenant_ids[index % len(tenant_ids)], f"model-{index % 3}", "us-east", "generate", status,
                                200 if status == "success" else 502, 300, 200, "0.00210000", "USD",
                                rng.lognormvariate(6, 0.7)])
        cursor.execute("ANALYZE gateway_usagerecord")
    loaded = time.perf_counter() - t0
    runs = []
    for _ in range(2):  # the second run recomputes the same minutes: the idempotent steady state
        t1 = time.perf_counter()
        result = rollup_range(start=start, end=end)
        runs.append(time.perf_counter() - t1)
    # The periodic job's shape: the last 10 minutes.
    t2 = time.perf_counter()
    rollup_range(start=end - timedelta(minutes=10), end=end)
    periodic = time.perf_counter() - t2
    return {"records": records, "copy_s": loaded, "rollup_s": runs, "minute_rows": result["minutes"],
            "records_per_s": records / runs[0], "periodic_10min_s": periodic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 30 days (and 10M records) to build")
    parser.add_argument("--raw-records", type=int, default=200_000, help="raw usage records for the rollup run")
    parser.add_argument("--runs", type=int, default=40, help="timed renders per page")
    parser.add_argument("--skip-generate", action="store_true", help="reuse the rollups already in the database")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit("set DATABASE_URL to a scratch database, e.g. postgres://postgres@127.0.0.1:5432/sy_sla_bench")
    ensure_database(url)
    os.environ.setdefault("SWITCHYARD_REDIS_PREFIX", f"sybench:sla:{os.getpid()}:")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)

    from django.test import Client

    from apps.accounts.models import User
    from apps.core.roles import Role
    from apps.sla.services import evaluate_all
    from apps.tenants.models import Membership

    tenant_ids = [f"bench-{index:02d}" for index in range(TENANTS)]
    days = DAYS * args.scale
    now = datetime.now(UTC)
    log(f"scale {args.scale}: {TENANTS} tenants, {days:g} days, about {RECORDS * args.scale:,.0f} requests as rollups")
    if not args.skip_generate:
        reset(tenant_ids)
        g = generate_rollups(days, tenant_ids, now)
        log(
            f"rollups: {g['minute_rows']:,} minute rows, {g['hour_rows']:,} hour rows, {g['requests']:,} requests; "
            f"generated in {g['generate_s']:.1f} s, hour and tenant-hour rollups by the real statements in {g['hour_rollup_s']:.1f} s"
        )
        r = raw_rollup_run(args.raw_records, tenant_ids, now)
        log(f"raw rollup: {r['records']:,} records (COPY {r['copy_s']:.1f} s) -> {r['minute_rows']:,} minute rows in "
            f"{r['rollup_s'][0]:.2f} s ({r['records_per_s']:,.0f} records/s); re-run {r['rollup_s'][1]:.2f} s; "
            f"periodic 10-minute run {r['periodic_10min_s']:.2f} s")

    t0 = time.perf_counter()
    summary = evaluate_all(now=now)
    log(f"evaluate_all ({summary['tenants']} tenants, {summary['non_compliant']} in breach, {summary['alerts']} alerts): "
        f"{time.perf_counter() - t0:.2f} s")

    admin, _ = User.objects.get_or_create(email="bench-admin@bench.test", defaults={"is_platform_admin": True})
    viewer, _ = User.objects.get_or_create(email="bench-viewer@bench.test")
    Membership.objects.get_or_create(tenant_id=tenant_ids[1], user=viewer, defaults={"role": Role.VIEWER})
    viewer.forget_tenant_roles()

    def client_for(user) -> Client:
        client = Client()
        client.force_login(user, backend="apps.accounts.backends.EmailPasswordBackend")
        session = client.session
        session["mfa_verified_at"] = time.time()
        session.save()
        return client

    admin_client, viewer_client = client_for(admin), client_for(viewer)

    def get(client, path, **headers):
        def run():
            response = client.get(path, **headers)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}")
        return run

    pages = [
        ("baseline /healthz", get(viewer_client, "/healthz")),
        ("tenant dashboard 30d (page)", get(viewer_client, f"/sla/{tenant_ids[1]}/?range=30d")),
        ("tenant dashboard 30d (5 s refresh)", get(viewer_client, f"/sla/{tenant_ids[1]}/?range=30d", HTTP_HX_REQUEST="true")),
        ("tenant dashboard 7d (page)", get(viewer_client, f"/sla/{tenant_ids[1]}/?range=7d")),
        ("fleet view, platform admin (page)", get(admin_client, "/sla/")),
        ("fleet view (5 s refresh)", get(admin_client, "/sla/", HTTP_HX_REQUEST="true")),
    ]
    results, cpu = {}, {}
    for name, fn in pages:
        results[name], cpu[name] = timed(fn, args.runs)
    base = pct(results["baseline /healthz"], 50)
    print()
    print(f"load average before the renders: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'page':40} {'p50 ms':>9} {'p95 ms':>9} {'x baseline p50':>15} {'CPU p50 ms':>11}")
    for name, values in results.items():
        print(
            f"{name:40} {pct(values, 50):9.1f} {pct(values, 95):9.1f} {pct(values, 50) / base:15.1f} "
            f"{pct(cpu[name], 50):11.1f}"
        )
    targets = [("tenant dashboard 30d (page)", 300), ("fleet view, platform admin (page)", 500)]
    print()
    for name, limit in targets:
        p95 = pct(results[name], 95)
        print(f"{name}: p95 {p95:.1f} ms against a {limit} ms target: {'OK' if p95 < limit else 'OVER'}")


if __name__ == "__main__":
    main()
