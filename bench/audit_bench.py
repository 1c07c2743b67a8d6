"""Audit benchmark: N events over T tenants loaded with COPY, then search p95, verify rate and append rate.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sy_audit_bench .venv/bin/python bench/audit_bench.py --events 1000000

Every figure is printed with a baseline measured in the same run on the same data: a plain
INSERT of the same rows (append), a plain read of the same rows (verify), the same search
issued as raw SQL (search). The database named by DATABASE_URL is created if missing and its
audit tables are emptied first: point it at a scratch database.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

ACTIONS = [
    ("gateway.generate", 0.62), ("gateway.chat_completion", 0.2), ("auth.sign_in", 0.05), ("auth.sign_in_failed", 0.01),
    ("quota.violation", 0.03), ("tenant.member_added", 0.005), ("tenant.member_removed", 0.003), ("tenant.updated", 0.005),
    ("key.rotate", 0.001), ("apikey.created", 0.01), ("apikey.revoked", 0.005), ("allocation.created", 0.005),
    ("region.failover", 0.001), ("audit.export", 0.002), ("auth.mfa_enabled", 0.003), ("auth.sign_out", 0.04),
]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b", "mistral-large"]
AGENTS = ["python-httpx/0.28.1", "openai-python/1.51.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0", "curl/8.5.0"]
COLUMNS = (
    "id", "tenant_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_label", "user_id", "action",
    "resource_type", "resource_id", "result", "ip", "user_agent", "request_id", "metadata", "details", "prev_hash", "hash",
)
SECONDARY_INDEXES = ["audit_event_tenant_time", "audit_event_tenant_action", "audit_event_user_time", "audit_event_time", "audit_event_search"]


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = psycopg.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432, user=parsed.username or "postgres",
                            dbname="postgres", autocommit=True)
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
        admin.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def generate(total: int, tenants: list[str], days: int, seed: int):
    """Rows in chain order per tenant, with valid hashes, spread evenly over `days` up to now."""
    from apps.audit.chain import body_hash, link_hash
    from apps.audit.models import GENESIS_HASH

    rng = random.Random(seed)
    names, weights = zip(*ACTIONS, strict=True)
    per_tenant = total // len(tenants)
    start = datetime.now(UTC) - timedelta(days=days)
    step = timedelta(days=days) / max(1, per_tenant)
    heads = {}
    for t_index, tenant in enumerate(tenants):
        prev = GENESIS_HASH
        users = [(t_index * 1000 + u, f"user{u}@{tenant}.test") for u in range(200)]
        actions = rng.choices(names, weights, k=per_tenant)
        for seq in range(1, per_tenant + 1):
            action = actions[seq - 1]
            user_id, email = users[rng.randrange(200)]
            failed = action == "auth.sign_in_failed" or (action == "quota.violation")
            row = {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "tenant_id": tenant,
                "occurred_at": start + step * seq + timedelta(microseconds=rng.randrange(1000)),
                "actor_type": "api_key" if action.startswith("gateway") else "user",
                "actor_id": str(user_id),
                "actor_label": f"sy_{user_id:08d}" if action.startswith("gateway") else email,
                "user_id": user_id,
                "action": action,
                "resource_type": "model" if action.startswith("gateway") else "user",
                "resource_id": rng.choice(MODELS) if action.startswith("gateway") else str(user_id),
                "result": "failure" if failed else ("denied" if rng.random() < 0.01 else "success"),
                "ip": f"10.{t_index}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "user_agent": rng.choice(AGENTS),
                "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "metadata": {"tokens": rng.randrange(10, 4000), "latency_ms": rng.randrange(20, 3000)} if action.startswith("gateway") else {"method": "password"},
                "details": None,
            }
            digest = link_hash(prev, seq, body_hash(row))
            yield (
                row["id"], tenant, seq, row["occurred_at"], row["actor_type"], row["actor_id"], row["actor_label"], row["user_id"],
                row["action"], row["resource_type"], row["resource_id"], row["result"], row["ip"], row["user_agent"],
                row["request_id"], json.dumps(row["metadata"], separators=(",", ":")), None, prev, digest,
            )
            prev = digest
        heads[tenant] = (per_tenant, prev)
    generate.heads = heads


def load(total: int, tenants: list[str], days: int) -> dict:
    from django.db import connection

    timings = {}
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_event, audit_chain_head, audit_sink_cursor, audit_sink_state")
        cursor.execute("DELETE FROM audit_checkpoint")
        for index in SECONDARY_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {index}")
    raw = connection.connection
    started = time.monotonic()
    count = 0
    with raw.cursor() as cur:
        with cur.copy(f"COPY audit_event ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in generate(total, tenants, days, seed=42):
                copy.write_row(row)
                count += 1
                if count % 500_000 == 0:
                    log(f"  copied {count:,} events ({count / (time.monotonic() - started):,.0f}/s)")
    timings["copy_seconds"] = time.monotonic() - started
    timings["copy_rate"] = count / timings["copy_seconds"]
    log(f"COPY {count:,} events in {timings['copy_seconds']:.1f}s ({timings['copy_rate']:,.0f}/s, hashing included)")
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("CREATE INDEX audit_event_tenant_time ON audit_event (tenant_id, occurred_at DESC)")
        cursor.execute("CREATE INDEX audit_event_tenant_action ON audit_event (tenant_id, action, occurred_at DESC)")
        cursor.execute("CREATE INDEX audit_event_user_time ON audit_event (user_id, occurred_at DESC)")
        cursor.execute("CREATE INDEX audit_event_time ON audit_event (occurred_at DESC)")
        cursor.execute("CREATE INDEX audit_event_search ON audit_event USING gin (search)")
        for tenant, (seq, last_hash) in generate.heads.items():
            cursor.execute(
                "INSERT INTO audit_chain_head (chain, last_seq, last_hash, prev_hash, updated_at) VALUES (%s, %s, %s, '', now())",
                [tenant, seq, last_hash],
            )
        cursor.execute("ANALYZE audit_event")
    timings["index_seconds"] = time.monotonic() - started
    log(f"indexes and ANALYZE in {timings['index_seconds']:.1f}s")
    from apps.audit.services import checkpoint_all_chains

    checkpoint_all_chains()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('audit_event'))")
        timings["table_size"] = cursor.fetchone()[0]
    log(f"audit_event with indexes: {timings['table_size']}")
    return timings


def bench_search(tenants: list[str], samples: int, days: int) -> dict:
    """p95 of page one (50 rows, newest first) for mixed filters: selector, raw SQL and the full console page."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import RequestFactory

    from apps.audit.selectors import EventFilters, search_page

    rng = random.Random(7)
    User = get_user_model()
    admin, _ = User.objects.get_or_create(email="bench-admin@platform.test", defaults={"is_platform_admin": True})
    now = datetime.now(UTC)

    def random_filters() -> EventFilters:
        tenant = rng.choice(tenants)
        kind = rng.randrange(7)
        t_index = tenants.index(tenant)
        if kind == 0:
            return EventFilters(tenant=tenant)
        if kind == 1:
            return EventFilters(tenant=tenant, action=rng.choice(["auth.sign_in_failed", "tenant.member_added", "gateway.generate", "key.rotate"]))
        if kind == 2:
            since = now - timedelta(days=rng.randrange(1, days))
            return EventFilters(tenant=tenant, since=since, until=since + timedelta(days=rng.choice([1, 7])))
        if kind == 3:
            return EventFilters(tenant=tenant, result=rng.choice(["failure", "denied"]))
        if kind == 4:
            return EventFilters(tenant=tenant, user=str(t_index * 1000 + rng.randrange(200)))
        if kind == 5:
            return EventFilters(tenant=tenant, q=rng.choice(["claude-3-5-sonnet", "curl", "failure", "password"]))
        return EventFilters(action="auth.sign_in_failed", since=now - timedelta(days=7))

    def run(filters):
        started = time.perf_counter()
        rows, _ = search_page(admin, filters, page=1, size=50)
        return time.perf_counter() - started, filters, len(rows)

    for _ in range(10):
        run(random_filters())  # warm the cache and the connection
    selector_times, by_kind = [], {}
    for _ in range(samples):
        elapsed, filters, _ = run(random_filters())
        selector_times.append(elapsed)
        key = ",".join(k for k, v in filters.__dict__.items() if v)
        by_kind.setdefault(key, []).append(elapsed)

    raw_times = []
    with connection.cursor() as cursor:
        for _ in range(samples):
            tenant = rng.choice(tenants)
            action = rng.choice(["auth.sign_in_failed", "tenant.member_added", "gateway.generate"])
            started = time.perf_counter()
            cursor.execute(
                "SELECT * FROM audit_event WHERE tenant_id = %s AND action = %s ORDER BY occurred_at DESC, id DESC LIMIT 51",
                [tenant, action],
            )
            cursor.fetchall()
            raw_times.append(time.perf_counter() - started)

    # The view itself, template included, called as the URL resolver would (no MFA or session
    # middleware in the way: the bench user has no second factor).
    factory = RequestFactory()
    from apps.audit.views import search as view

    page_times = []
    for index in range(samples):
        filters = random_filters()
        params = {k: (v.date().isoformat() if isinstance(v, datetime) else v) for k, v in filters.__dict__.items() if v}
        if "since" in params and "until" in params and params["since"] == params["until"]:
            params.pop("until")
        request = factory.get("/audit/", params, HTTP_HX_REQUEST="true" if index % 2 else "false")
        request.user = admin
        started = time.perf_counter()
        response = view(request)
        response.content  # noqa: B018  (rendered)
        page_times.append(time.perf_counter() - started)
        assert response.status_code == 200, (response.status_code, params)
    return {
        "selector_p50_ms": statistics.median(selector_times) * 1000,
        "selector_p95_ms": percentile(selector_times, 95) * 1000,
        "page_p50_ms": statistics.median(page_times) * 1000,
        "page_p95_ms": percentile(page_times, 95) * 1000,
        "raw_sql_p95_ms": percentile(raw_times, 95) * 1000,
        "by_filter_p95_ms": {k: round(percentile(v, 95) * 1000, 1) for k, v in sorted(by_kind.items())},
    }


def bench_verify(tenants: list[str], max_events: int) -> dict:
    from django.db import connection, transaction

    from apps.audit.verify import verify_chain

    checked, elapsed, chosen = 0, 0.0, []
    for tenant in tenants:
        started = time.monotonic()
        report = verify_chain(tenant)
        elapsed += time.monotonic() - started
        assert report.ok, report.errors[:3]
        checked += report.events
        chosen.append(tenant)
        if checked >= max_events:
            break
    read_started = time.monotonic()
    read = 0
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute("SELECT * FROM audit_event WHERE tenant_id = ANY(%s) ORDER BY tenant_id, seq", [chosen])
        while rows := cursor.fetchmany(5000):
            read += len(rows)
    read_elapsed = time.monotonic() - read_started
    return {"verified_events": checked, "verify_rate": checked / elapsed, "plain_read_rate": read / read_elapsed, "chains": len(chosen)}


def bench_append(tenants: list[str], n: int, batch: int, rounds: int = 5) -> dict:
    """Events per second through record_event (one autocommit transaction each, as a request does)
    and record_events_bulk (the gateway's batching writer), against plain INSERTs of the same rows
    into the same table. The four run in interleaved rounds so a busy machine weighs on each alike."""
    from django.db import connection

    from apps.audit.services import Actor, build_event, new_event_id, record_event, record_events_bulk

    rng = random.Random(3)
    actor = Actor("api_key", "k1", "sy_bench01", 1)

    def event(i):
        return {"action": "gateway.generate", "tenant_id": rng.choice(tenants), "actor": actor, "resource_type": "model",
                "resource_id": rng.choice(MODELS), "ip": "10.9.8.7", "user_agent": "bench/1.0",
                "metadata": {"tokens": i % 4000, "latency_ms": 120}}

    cols = ", ".join(COLUMNS)
    placeholders = ", ".join(["%s::jsonb" if c == "metadata" else "%s" for c in COLUMNS])
    seq = iter(range(1, 10**9))

    def plain(row):
        # The same columns into the same table under a tenant id of its own (removed afterwards): no chain.
        return [
            new_event_id(),
            "bench-baseline",
            next(seq),
            row["occurred_at"],
            row["actor_type"],
            row["actor_id"],
            row["actor_label"],
            row["user_id"],
            row["action"],
            row["resource_type"],
            row["resource_id"],
            row["result"],
            row["ip"],
            row["user_agent"],
            row["request_id"],
            json.dumps(row["metadata"]),
            None,
            "0" * 64,
            hashlib.sha256(row["body_hash"].encode()).hexdigest(),
        ]

    per_round = max(batch, n // rounds)
    spent = {"record_event": 0.0, "plain_insert": 0.0, "record_events_bulk": 0.0, "plain_multirow_insert": 0.0}
    done = 0
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_event WHERE tenant_id = 'bench-baseline'")
        for _ in range(rounds):
            started = time.monotonic()
            for i in range(per_round):
                record_event(**event(i))
            spent["record_event"] += time.monotonic() - started

            started = time.monotonic()
            for i in range(per_round):
                cursor.execute(
                    f"INSERT INTO audit_event ({cols}) VALUES ({placeholders})", plain(build_event(**event(i)))
                )
            spent["plain_insert"] += time.monotonic() - started

            started = time.monotonic()
            for start in range(0, per_round, batch):
                record_events_bulk([event(i) for i in range(start, min(per_round, start + batch))])
            spent["record_events_bulk"] += time.monotonic() - started

            started = time.monotonic()
            for start in range(0, per_round, batch):
                chunk = [plain(build_event(**event(i))) for i in range(start, min(per_round, start + batch))]
                cursor.execute(
                    f"INSERT INTO audit_event ({cols}) VALUES " + ", ".join([f"({placeholders})"] * len(chunk)),
                    [v for row in chunk for v in row],
                )
            spent["plain_multirow_insert"] += time.monotonic() - started
            done += per_round
        cursor.execute("DELETE FROM audit_event WHERE tenant_id = 'bench-baseline'")
    return {
        "record_event_rate": done / spent["record_event"],
        "plain_insert_rate": done / spent["plain_insert"],
        "record_events_bulk_rate": done / spent["record_events_bulk"],
        "plain_multirow_insert_rate": done / spent["plain_multirow_insert"],
        "batch": batch,
        "n": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--search-samples", type=int, default=300)
    parser.add_argument("--verify-events", type=int, default=2_000_000, help="Verify whole chains until this many events.")
    parser.add_argument("--append-events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--skip-load", action="store_true", help="Reuse the events already loaded.")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sy_audit_bench")
    if not url.rstrip("/").rsplit("/", 1)[-1].endswith("bench"):
        sys.exit("Point DATABASE_URL at a scratch database whose name ends in 'bench': its audit tables are emptied.")
    os.environ["DATABASE_URL"] = url
    ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    tenants = [f"bench-{i:02d}" for i in range(args.tenants)]
    from django.apps import apps

    tenant_model = apps.get_model("tenants", "Tenant")
    for tenant in tenants:
        tenant_model.objects.get_or_create(id=tenant, defaults={"name": tenant.title()})
    results: dict = {"events": args.events, "tenants": args.tenants}
    if not args.skip_load:
        results["load"] = load(args.events, tenants, args.days)
    log("search ...")
    results["search"] = bench_search(tenants, args.search_samples, args.days)
    s = results["search"]
    log(f"search page one, 50 rows: selector p50 {s['selector_p50_ms']:.1f} ms p95 {s['selector_p95_ms']:.1f} ms; "
        f"console page p50 {s['page_p50_ms']:.1f} ms p95 {s['page_p95_ms']:.1f} ms; raw SQL baseline p95 {s['raw_sql_p95_ms']:.1f} ms")
    for key, value in s["by_filter_p95_ms"].items():
        log(f"  p95 {value:7.1f} ms  filters: {key}")
    log("verify ...")
    results["verify"] = bench_verify(tenants, args.verify_events)
    v = results["verify"]
    log(f"verify: {v['verified_events']:,} events in {v['chains']} chains at {v['verify_rate']:,.0f} events/s; "
        f"plain read baseline {v['plain_read_rate']:,.0f} rows/s (ratio {v['verify_rate'] / v['plain_read_rate']:.2f})")
    log("append ...")
    results["append"] = bench_append(tenants, args.append_events, args.batch)
    a = results["append"]
    log(f"append: record_event {a['record_event_rate']:,.0f}/s vs plain INSERT {a['plain_insert_rate']:,.0f}/s "
        f"(ratio {a['record_event_rate'] / a['plain_insert_rate']:.2f}); record_events_bulk({a['batch']}) "
        f"{a['record_events_bulk_rate']:,.0f}/s vs plain multi-row INSERT {a['plain_multirow_insert_rate']:,.0f}/s "
        f"(ratio {a['record_events_bulk_rate'] / a['plain_multirow_insert_rate']:.2f})")
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
