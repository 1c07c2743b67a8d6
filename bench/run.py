"""`make bench`: every benchmark in bench/, each in its own process against a scratch database.

    make bench                          # full size (10M-record data sets; takes a long while)
    make bench BENCH_ARGS=--quick       # small data sets, for a smoke run
    make bench BENCH_ARGS="--only gateway,sla"

Each benchmark prints its own table with ratios against a baseline measured in the same run and
writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent

BENCHES = {
    # name: (module, full-size args, quick args)
    "gateway": ("bench.gateway_bench", [], ["--quick"]),
    "audit": ("bench.audit_bench", [], ["--events", "200000", "--append-events", "5000"]),
    "sla": ("bench.sla_bench", [], ["--scale", "0.05"]),
    "billing": ("bench.billing_bench", [], ["--scale", "0.02"]),
}


def scratch_database_url(name: str) -> str:
    """The environment's DATABASE_URL with the database renamed: benchmarks empty their tables."""
    url = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchyard"))
    return urlunparse(url._replace(path=f"/switchyard_{name}_bench"))


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        name = parsed.path.lstrip("/")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data sets and fewer requests")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    args = parser.parse_args()

    failures = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in BENCHES:
            parser.error(f"unknown benchmark {name!r}")
        module, full, quick = BENCHES[name]
        url = scratch_database_url(name)
        ensure_database(url)
        env = {**os.environ, "DATABASE_URL": url, "SWITCHYARD_REDIS_PREFIX": f"sybench:{name}:"}
        print(f"\n=== {name} ({'quick' if args.quick else 'full'}) ===", flush=True)
        started = time.monotonic()
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env)
        result = (
            migrate.returncode
            or subprocess.run(
                [sys.executable, "-m", module, *(quick if args.quick else full)], cwd=ROOT, env=env
            ).returncode
        )
        print(
            f"=== {name}: {'ok' if result == 0 else f'FAILED ({result})'} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if result:
            failures.append(name)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
