"""`manage.py verify_audit [--tenant X]`: check every audit chain and checkpoint; non-zero on any break."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from apps.audit.verify import verify_all


class Command(BaseCommand):
    help = "Verify the audit hash chains and signed checkpoints; exits 1 naming the first bad event."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant's chain ('platform' for platform events).")
        parser.add_argument("--json", action="store_true", help="Print one JSON report instead of text.")

    def handle(self, *args, tenant=None, json=False, **options):
        started = time.monotonic()
        reports = verify_all(tenant)
        elapsed = time.monotonic() - started
        events = sum(r.events for r in reports)
        valid_events = sum(r.valid_events for r in reports)
        checkpoints = sum(r.checkpoints for r in reports)
        valid_checkpoints = sum(r.valid_checkpoints for r in reports)
        bad = [r for r in reports if not r.ok]
        if json:
            self.stdout.write(_json_dumps({
                "ok": not bad, "chains": [r.as_dict() for r in reports], "events": events, "valid_events": valid_events,
                "checkpoints": checkpoints, "valid_checkpoints": valid_checkpoints, "seconds": round(elapsed, 3),
            }))
        else:
            for report in reports:
                state = "ok" if report.ok else "BROKEN"
                self.stdout.write(
                    f"{report.label}: {state}, {report.valid_events}/{report.events} events valid, "
                    f"{report.valid_checkpoints}/{report.checkpoints} checkpoints valid"
                )
                for error in report.errors[:5]:
                    self.stdout.write(f"  {error}")
            rate = events / elapsed if elapsed > 0 else 0.0
            self.stdout.write(
                f"{len(reports)} chains: {valid_events} of {events} events and {valid_checkpoints} of {checkpoints} "
                f"checkpoints valid in {elapsed:.2f}s ({rate:,.0f} events/s)"
            )
        if bad:
            first = bad[0]
            where = f"first bad event {first.first_bad_event}" if first.first_bad_event else first.errors[0]
            raise CommandError(f"audit chain {first.label} is broken: {where}")


def _json_dumps(value) -> str:
    return json.dumps(value, indent=2)
