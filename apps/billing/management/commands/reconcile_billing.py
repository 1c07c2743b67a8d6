"""Check a month's invoices against the usage records to the cent; exit 1 on any mismatch."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from apps.billing import services
from apps.billing.money import add_months, month_start, parse_period, period_label


class Command(BaseCommand):
    help = ("Recompute each invoice of a month from the usage records (same rounding: per model and department "
            "line, half up, to the cent) and report any difference. Exit status 1 when something does not match.")

    def add_arguments(self, parser):
        parser.add_argument("--period", help="YYYY-MM (default: the last closed month).")

    def handle(self, *args, period=None, **options):
        try:
            start = parse_period(period) if period else add_months(month_start(datetime.now(UTC)), -1)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        results = services.reconcile(period_start=start)
        problems = [r for r in results if not r.ok]
        for r in results:
            status = "OK " if r.ok else "BAD"
            self.stdout.write(f"{status} {r.tenant_id} {r.currency} {r.invoice or '-'} invoiced={r.invoiced} "
                              f"expected={r.expected}" + (f": {r.problem}" if r.problem else ""))
        invoices = sum(1 for r in results if r.invoice)
        self.stdout.write(f"{period_label(start)}: {invoices} invoices, {len(problems)} problems")
        if problems:
            sys.exit(1)
