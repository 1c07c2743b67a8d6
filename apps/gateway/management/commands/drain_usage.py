"""Store queued usage records and their audit events: once, or continuously with --follow (a
dedicated drainer process, for deployments that turn SWITCHYARD_USAGE_DRAIN_IN_SERVER off so the
servers' event loops never share their process with database writes)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from apps.gateway import usage


class Command(BaseCommand):
    help = "Move queued usage records from Redis into Postgres."

    def add_arguments(self, parser):
        parser.add_argument("--follow", action="store_true", help="Keep draining until interrupted.")

    def handle(self, *args, follow, **options):
        interval = settings.SWITCHYARD_USAGE_FLUSH_MS / 1000
        total = usage.drain_all()
        while follow:
            try:
                time.sleep(interval)
                close_old_connections()
                total += usage.drain_all()
            except KeyboardInterrupt:
                break
            except Exception as exc:  # the batch stays queued; retry on the next round
                self.stderr.write(f"drain failed, retrying: {exc.__class__.__name__}")
                time.sleep(1)
        self.stdout.write(f"stored {total} queued records")
