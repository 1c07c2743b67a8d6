"""Billing benchmark: 10 million usage records over 30 days and 50 tenants, loaded with COPY into
the real partitioned usage table; then one tenant's monthly chargeback report (target < 1 s) and
the invoice run for all tenants (target < 60 s), each beside a baseline measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sy_billing_bench .venv/bin/python bench/billing_bench.py
    ... bench/billing_bench.py --scale 0.1      # a tenth of the records (same tenants, same 30 days)
    ... bench/billing_bench.py --skip-load      # reuse the records of the previous run

Baselines: for the report, the cheapest possible read of one tenant's month (count and sum of cost
over its rows); for the invoice run, one GROUP BY tenant sum over the whole month. The report and
run go through the real code (apps.billing.selectors.chargeback, services.run_monthly_invoices,
services.reconcile). The database named by DATABASE_URL is created and migrated if missing and its
usage and billing tables are emptied: point it at a scratch database (its name must contain "bench").
Results are printed and written to bench/results/billing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

TENANTS = 50
DAYS = 30
RECORDS = 10_000_000
PERIOD = datetime(2026, 10, 1, tzinfo=UTC)
# model -> (input, output) price per 1k tokens in millionths; "sim-unpriced" has no price.
MODELS = {"gpt-large": (10_000, 30_000), "gpt-small": (150, 600), "claude-mid": (3_000, 15_000),
          "llama-70b": (700, 900), "sim-unpriced": None}
MODEL_WEIGHTS = [0.2, 0.45, 0.2, 0.145, 0.005]


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


def setup_world():
    """50 tenants with 5 departments and 10 projects each, and the model prices."""
    from decimal import Decimal

    from apps.gateway.models import ModelPrice
    from apps.tenants.models import Department, Project, Tenant

    world = {}
    for t in range(TENANTS):
        tenant_id = f"bench-{t:02d}"
        tenant, _ = Tenant.objects.get_or_create(id=tenant_id, defaults={"name": f"Bench {t:02d}"})
        depts = [Department.objects.get_or_create(tenant=tenant, code=f"d{d}", defaults={"name": f"Dept {d}"})[0].pk
                 for d in range(5)]
        projects = [Project.objects.get_or_create(tenant=tenant, code=f"p{p}", defaults={"name": f"Project {p}"})[0].pk
                    for p in range(10)]
        world[tenant_id] = (depts, projects)
    for model, prices in MODELS.items():
        if prices and not ModelPrice.objects.filter(model=model).exists():
            ModelPrice.objects.create(model=model, input_per_1k=Decimal(prices[0]) / 1_000_000,
                                      output_per_1k=Decimal(prices[1]) / 1_000_000, currency="USD",
                                      effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    return world


def generate(world, records: int, chunk: int = 200_000):
    """COPY text chunks of usage records, costs computed exactly as the gateway prices them
    (per-1k prices, quantized to 8 places half up, in integer arithmetic)."""
    rng = random.Random(42)
    tenants = list(world)
    weights = [1.0 + (i % 7) for i in range(len(tenants))]  # uneven tenants, like real ones
    minutes = [(PERIOD + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M") for m in range(DAYS * 24 * 60)]
    # Attribution follows the API key, as in the gateway: each key belongs to a user, a department
    # and a project (some keys lack one); 10 % of requests name another project in their metadata.
    keys = {}
    for ti, tenant in enumerate(tenants):
        depts, projects = world[tenant]
        keys[tenant] = []
        for n in range(40):
            keys[tenant].append(
                (
                    f"00000000-0000-4000-8000-{ti:04d}{n:08d}",
                    "\\N" if n % 10 == 9 else str(1000 * ti + n % 25),
                    "\\N" if n % 8 == 7 else str(depts[n % 5]),
                    "\\N" if n % 6 == 5 else str(projects[n % 10]),
                )
            )
    models = list(MODELS)
    lines = []
    tenant_seq = rng.choices(tenants, weights=weights, k=records)
    model_seq = rng.choices(models, weights=MODEL_WEIGHTS, k=records)
    for i in range(records):
        tenant = tenant_seq[i]
        r = rng.random()
        key, user, dept, project = keys[tenant][int(r * 40)]
        if r * 400 % 1 < 0.1:
            project = str(world[tenant][1][int(r * 4000) % 10])
        model = model_seq[i]
        prompt = 50 + int(rng.random() * 3000)
        completion = int(rng.random() * 1500)
        prices = MODELS[model]
        if prices:
            nano = prompt * prices[0] + completion * prices[1]  # cost in 1e-9
            units = (nano + 5) // 10                            # to 1e-8, half up
            cost, currency, unpriced = f"{units // 100_000_000}.{units % 100_000_000:08d}", "USD", "f"
        else:
            cost, currency, unpriced = "\\N", "", "t"
        stamp = f"{minutes[int(rng.random() * len(minutes))]}:{int(rng.random() * 60):02d}+00"
        lines.append(
            f"b{i:011d}\t{stamp}\t{tenant}\t{key}\t{user}\t{dept}\t{project}\t{model}\t"
            f"us-east\tgenerate\tf\tsuccess\t200\t\t{prompt}\t{completion}\t{cost}\t{currency}\t{unpriced}\t"
            f"12.5\t1\t{{}}\n"
        )
        if len(lines) >= chunk:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


def load(world, records: int) -> float:
    from django.db import connection

    from apps.gateway import partitions

    partitions.ensure_partition_for([PERIOD])
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE gateway_usagerecord")
        with connection.connection.cursor().copy(
            "COPY gateway_usagerecord (request_id, created_at, tenant_id, api_key_id, user_id, department_id, "
            "project_id, model, region_id, endpoint, stream, status, status_code, error_code, prompt_tokens, "
            "completion_tokens, cost, currency, unpriced, latency_ms, attempts, tags) FROM STDIN"
        ) as copy:
            done = 0
            for block in generate(world, records):
                copy.write(block)
                done += block.count(b"\n")
                if done % 1_000_000 < 200_000:
                    log(f"  {done:,} records")
        cursor.execute("ANALYZE gateway_usagerecord")
    return time.perf_counter() - started


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 10M records")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--cold-invoice-run",
        action="store_true",
        help="clear the rollup watermark first, so the invoice run rebuilds the whole month's rollups",
    )
    parser.add_argument(
        "--without-sla-credits",
        action="store_true",
        help="skip the SLA app's credit computation (when its tables are not migrated)",
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    ensure_database(url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from apps.billing import selectors, services
    from apps.billing.money import add_months

    if args.without_sla_credits:
        import apps.sla.services as sla_services

        sla_services.credits_for_period = lambda **kwargs: []
    records = int(RECORDS * args.scale)
    world = setup_world()
    results = {
        "records": records,
        "tenants": TENANTS,
        "days": DAYS,
        "period": "2026-10",
        "sla_credits": not args.without_sla_credits,
    }
    if not args.skip_load:
        log(f"loading {records:,} usage records with COPY")
        results["load_seconds"] = round(load(world, records), 1)
        log(f"loaded in {results['load_seconds']} s")
    log("building the daily rollups (the beat task's job, here for the whole month at once)")
    rollup_started = time.perf_counter()
    rollup_rows = services.rollup_usage(start=PERIOD, end=add_months(PERIOD, 1))
    from apps.billing.models import RollupState

    RollupState.objects.update_or_create(pk="usage", defaults={"complete_until": add_months(PERIOD, 1)})
    results["rollup"] = {"seconds": round(time.perf_counter() - rollup_started, 1), "rows": rollup_rows}
    # Rebuilding a whole month at once leaves the old rows dead; autovacuum would reclaim them, in
    # steady state the periodic run only rewrites a day or two. Vacuum here so runs are comparable.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE billing_usagerollup")
    log(f"  {results['rollup']}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM gateway_usagerecord")
        results["rows_in_table"] = cursor.fetchone()[0]
        cursor.execute("TRUNCATE billing_invoiceline, billing_invoice, billing_invoicesequence")
        cursor.execute("SELECT tenant_id, count(*) FROM gateway_usagerecord GROUP BY tenant_id ORDER BY 2 DESC LIMIT 1")
        biggest, biggest_rows = cursor.fetchone()
    start, end = PERIOD, add_months(PERIOD, 1)

    def baseline_one():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), sum(cost) FROM gateway_usagerecord WHERE tenant_id = %s "
                           "AND created_at >= %s AND created_at < %s", [biggest, start, end])
            cursor.fetchall()

    def report():
        selectors.chargeback(tenant_id=biggest, start=start, end=end)

    log(f"chargeback report for {biggest} ({biggest_rows:,} records in the month)")
    cold = timed(report, 1)[0]
    base = timed(baseline_one, args.runs)
    rep = timed(report, args.runs)
    results["chargeback"] = {
        "tenant": biggest, "tenant_records": biggest_rows, "cold_s": round(cold, 3),
        "median_s": round(statistics.median(rep), 3), "max_s": round(max(rep), 3),
        "baseline_count_sum_median_s": round(statistics.median(base), 3),
        "ratio_to_baseline": round(statistics.median(rep) / statistics.median(base), 2),
        "target_s": 1.0, "met": max(rep + [cold]) < 1.0,
    }
    log(f"  {results['chargeback']}")

    def baseline_all():
        with connection.cursor() as cursor:
            cursor.execute("SELECT tenant_id, sum(cost) FROM gateway_usagerecord WHERE created_at >= %s "
                           "AND created_at < %s GROUP BY tenant_id", [start, end])
            cursor.fetchall()

    if args.cold_invoice_run:
        RollupState.objects.filter(pk="usage").delete()
    results["cold_invoice_run"] = args.cold_invoice_run
    log("invoice run for all tenants")
    base_all = timed(baseline_all, 1)[0]
    run_started = time.perf_counter()
    counts = services.run_monthly_invoices(period_start=start, now=end + timedelta(days=1))
    run_s = time.perf_counter() - run_started
    rerun = timed(lambda: services.run_monthly_invoices(period_start=start, now=end + timedelta(days=1)), 1)[0]
    rec_started = time.perf_counter()
    reconciled = services.reconcile(period_start=start)
    rec_s = time.perf_counter() - rec_started
    results["invoice_run"] = {
        "tenants": counts["tenants"], "invoices": counts["invoices"], "failed": counts["failed"],
        "seconds": round(run_s, 2), "rerun_idempotent_seconds": round(rerun, 2),
        "baseline_group_by_tenant_s": round(base_all, 2), "ratio_to_baseline": round(run_s / base_all, 2),
        "target_s": 60.0, "met": run_s < 60.0,
        "reconcile_seconds": round(rec_s, 2), "reconcile_problems": [r.__dict__ for r in reconciled if not r.ok],
    }
    log(f"  {results['invoice_run']}")
    out = ROOT / "bench" / "results" / "billing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
