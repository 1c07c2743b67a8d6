"""Recompute SLA rollups over a period, e.g. after an outage delayed usage records past the
periodic run's look-back: `manage.py sla_rollup --since 2026-11-01T00:00Z [--until ...] [--tenant t]`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.sla.rollups import rollup_range


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{value!r} is not an ISO 8601 time, e.g. 2026-11-01T00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Recompute minute, hour and tenant-hour SLA rollups over a period (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="start, ISO 8601 (UTC if no offset)")
        parser.add_argument("--until", help="end, ISO 8601; default now")
        parser.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
        parser.add_argument("--chunk-hours", type=int, default=6, help="hours per transaction")

    def handle(self, *args, since, until=None, tenants=None, chunk_hours=6, **options):
        start, end = _moment(since), _moment(until) if until else datetime.now(UTC)
        if end <= start:
            raise CommandError("--until must be after --since")
        minutes = hours = 0
        cursor = start
        while cursor < end:
            upper = min(end, cursor + timedelta(hours=chunk_hours))
            result = rollup_range(start=cursor, end=upper, tenant_ids=tenants)
            minutes, hours = minutes + result["minutes"], hours + result["hours"]
            cursor = upper
        self.stdout.write(f"recomputed {minutes} minute rows and {hours} hour rows from {start:%Y-%m-%d %H:%M} "
                          f"to {end:%Y-%m-%d %H:%M} UTC")
