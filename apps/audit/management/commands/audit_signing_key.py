"""`manage.py audit_signing_key`: print the public key that verifies audit checkpoints (or a new seed)."""

from __future__ import annotations

import base64
import os

from django.core.management.base import BaseCommand

from apps.audit import signing


class Command(BaseCommand):
    help = "Print the Ed25519 public key of the audit checkpoint signer; --new-seed prints a fresh seed for SWITCHYARD_AUDIT_SIGNING_KEY."

    def add_arguments(self, parser):
        parser.add_argument("--new-seed", action="store_true", help="Print a new random seed (base64) and nothing else.")

    def handle(self, *args, new_seed=False, **options):
        if new_seed:
            self.stdout.write(base64.b64encode(os.urandom(32)).decode())
            return
        self.stdout.write(f"key id: {signing.current_key_id()}")
        self.stdout.write(f"public key (base64, raw 32 bytes): {signing.public_key_b64()}")
        self.stdout.write(signing.public_key_pem().rstrip())
