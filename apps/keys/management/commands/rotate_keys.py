"""`manage.py rotate_keys`: rotate data keys on demand or when due, and run re-encryption."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.keys import services
from apps.keys.errors import KeysError
from apps.keys.models import DataKey, Keyring, KeyState

PLATFORM_NAME = "platform"


class Command(BaseCommand):
    help = (
        "Rotate a tenant's data key (--tenant X; 'platform' for the platform keyring) or every key past "
        "its rotation period (--all-due); --reencrypt then moves rows onto the new version here, in "
        "resumable batches, and retires versions no row uses. --reencrypt alone resumes pending jobs."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--tenant", action="append", default=[], help="Tenant id (repeatable).")
        target.add_argument("--all-due", action="store_true", help="Every keyring older than its period.")
        parser.add_argument("--reencrypt", action="store_true", help="Re-encrypt rows now instead of queueing it.")
        parser.add_argument("--no-rotate", action="store_true", help="With --tenant: only re-encrypt.")
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per transaction.")
        parser.add_argument("--pause", type=float, default=0.0, help="Seconds to sleep between batches.")
        parser.add_argument("--reason", default="manual", help="Recorded with the rotation.")

    def handle(self, *args, tenant, all_due, reencrypt, no_rotate, batch_size, pause, reason, **options):
        self.verbosity = options["verbosity"]
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if not tenant and not all_due and not reencrypt:
            raise CommandError("Say which keys: --tenant X, --all-due, or --reencrypt for pending jobs.")
        ring_ids = [self._ring_id(name) for name in tenant]
        self._check_tenants_exist([ring_id for ring_id in ring_ids if ring_id])
        try:
            if all_due:
                ring_ids = services.rotate_due_keys()
                self.stdout.write(f"Rotated {len(ring_ids)} keyring(s) past their rotation period.")
            elif ring_ids and not no_rotate:
                for ring_id in ring_ids:
                    key = services.rotate_tenant_key(tenant_id=ring_id or None, reason=reason,
                                                     enqueue_reencrypt=not reencrypt)
                    self.stdout.write(f"Rotated {self._name(ring_id)}: version {key.version} is primary.")
            if not reencrypt:
                return
            if not ring_ids:
                ring_ids = sorted(set(DataKey.objects.filter(
                    state=KeyState.DECRYPT_ONLY, keyring__destroyed_at__isnull=True).values_list("tenant_id", flat=True)))
            for ring_id in ring_ids:
                self._reencrypt(ring_id, batch_size, pause)
        except KeysError as exc:
            raise CommandError(str(exc)) from None

    def _reencrypt(self, ring_id, batch_size, pause):
        def progress(job):
            if self.verbosity >= 2:
                self.stdout.write(f"  {self._name(ring_id)}: {job.rows_reencrypted} row(s) re-encrypted")

        job = services.reencrypt_tenant(tenant_id=ring_id or None, batch_size=batch_size, pause=pause,
                                        progress=progress)
        if job is None:
            self.stdout.write(f"{self._name(ring_id)}: no keys to re-encrypt with.")
            return
        self.stdout.write(
            f"{self._name(ring_id)}: job {job.pk} {job.status}, {job.rows_reencrypted} row(s) re-encrypted, "
            f"{job.rows_failed} left on old versions (unreadable), run {job.runs}."
        )

    @staticmethod
    def _check_tenants_exist(ring_ids):
        from django.apps import apps

        known = set(Keyring.objects.filter(tenant_id__in=ring_ids).values_list("tenant_id", flat=True))
        if apps.is_installed("apps.tenants"):
            known |= set(apps.get_model("tenants", "Tenant").objects.filter(pk__in=ring_ids).values_list("pk", flat=True))
        missing = [ring_id for ring_id in ring_ids if ring_id not in known]
        if missing:
            raise CommandError(f"No such tenant: {', '.join(missing)}")

    @staticmethod
    def _ring_id(name: str) -> str:
        return "" if name == PLATFORM_NAME else name

    @staticmethod
    def _name(ring_id: str) -> str:
        return ring_id or PLATFORM_NAME
