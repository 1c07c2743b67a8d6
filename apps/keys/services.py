"""Writes and crypto of the keys app: encrypt/decrypt, keyrings, rotation, re-encryption and
crypto-shredding. Unwrapped data keys live briefly in process memory and nowhere else."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.module_loading import import_string

from . import crypto
from .errors import DecryptionError, KeyDestroyedError, KeyringDestroyedError, KeysError
from .models import DataKey, JobStatus, Keyring, KeyState, ReencryptionJob, keyring_id
from .providers import get_kek_provider

logger = logging.getLogger(__name__)

DATA_KEY_BYTES = 32


# --- The in-process key cache ---------------------------------------------------------------
_cache_lock = threading.Lock()
_key_cache: dict[tuple[str, int], tuple[AESGCM, float]] = {}
_primary_cache: dict[str, tuple[int, float]] = {}


def clear_key_cache(tenant_id: str | None = ..., /) -> None:  # type: ignore[assignment]
    """Forget cached keys: of one tenant (None = the platform), or of every tenant."""
    local = _transaction_cache()
    if local is not None:
        local.clear()
    with _cache_lock:
        if tenant_id is ...:
            _key_cache.clear()
            _primary_cache.clear()
            return
        ring = keyring_id(tenant_id)
        _primary_cache.pop(ring, None)
        for cache_key in [k for k in _key_cache if k[0] == ring]:
            _key_cache.pop(cache_key, None)


def _connection():
    return connections[router.db_for_write(DataKey)]


class _UncommittedKeys:
    """Keys this connection created in a transaction that has not committed yet."""

    def __init__(self, blocks):
        self.outer = blocks[0]
        self.snapshot = tuple(blocks)
        self.cache: dict = {}


def _transaction_cache() -> dict | None:
    """While this connection's open transaction has created a key, a cache private to that
    transaction; None otherwise. A key created in a transaction that may yet roll back must not
    reach the process cache, or this process could seal values with a key that never existed."""
    conn = _connection()
    state = getattr(conn, "_switchyard_uncommitted_keys", None)
    if state is None:
        return None
    blocks = conn.atomic_blocks
    if not conn.in_atomic_block or not blocks or blocks[0] is not state.outer:
        conn._switchyard_uncommitted_keys = None  # that transaction has ended, one way or the other
        return None
    current = tuple(blocks)
    if len(current) < len(state.snapshot) or any(a is not b for a, b in zip(state.snapshot, current, strict=False)):
        # A savepoint ended (perhaps rolled back): forget what was learnt inside it.
        state.snapshot, state.cache = current, {}
    return state.cache


def _remember(cache_key, value, shared: dict) -> None:
    local = _transaction_cache()
    if local is not None:
        local[cache_key] = value
        return
    with _cache_lock:
        shared[cache_key] = (value, time.monotonic() + settings.SWITCHYARD_KEYS_CACHE_SECONDS)


def _recall(cache_key, shared: dict):
    local = _transaction_cache()
    if local is not None and cache_key in local:
        return local[cache_key]
    cached = shared.get(cache_key)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    return None


def _mark_uncommitted() -> None:
    conn = _connection()
    if _transaction_cache() is None:
        conn._switchyard_uncommitted_keys = _UncommittedKeys(conn.atomic_blocks)
    else:
        conn._switchyard_uncommitted_keys.snapshot = tuple(conn.atomic_blocks)
        conn._switchyard_uncommitted_keys.cache.clear()


def _wrap_context(ring: str, version: int) -> bytes:
    # A wrapped key copied onto another tenant's or version's record fails to unwrap.
    return json.dumps(["switchyard-data-key", ring, version]).encode()


def _load_key(ring: str, version: int) -> AESGCM:
    cached = _recall((ring, version), _key_cache)
    if cached is not None:
        return cached
    row = DataKey.objects.filter(tenant_id=ring, version=version).values_list("state", "wrapped_key").first()
    label = _ring_label(ring)
    if row is None:
        raise DecryptionError(f"key version {version} of {label} does not exist")
    state, wrapped = row
    if state == KeyState.DESTROYED or wrapped is None:
        raise KeyDestroyedError(f"key version {version} of {label} was destroyed; the value cannot be recovered")
    aead = AESGCM(get_kek_provider().unwrap(bytes(wrapped), context=_wrap_context(ring, version)))
    _remember((ring, version), aead, _key_cache)
    return aead


def _primary_version(ring: str) -> int:
    cached = _recall(ring, _primary_cache)
    if cached is not None:
        return cached
    version = DataKey.objects.filter(tenant_id=ring, state=KeyState.PRIMARY).values_list("version", flat=True).first()
    if version is None:
        if Keyring.objects.filter(tenant_id=ring, destroyed_at__isnull=False).exists():
            raise KeyringDestroyedError(f"the keys of {_ring_label(ring)} were destroyed; nothing can be encrypted for it")
        version = _ensure(ring, revive=False).versions.get(state=KeyState.PRIMARY).version
    _remember(ring, version, _primary_cache)
    return version


def _ring_label(ring: str) -> str:
    return f"tenant {ring}" if ring else "the platform keyring"


# --- Encrypt and decrypt --------------------------------------------------------------------
def encrypt(*, tenant_id: str | None, plaintext: bytes | str, table: str, row: str, field: str) -> str:
    """AES-256-GCM under the tenant's primary data key; the token names the key version and is
    bound to tenant, table, row and field."""
    if isinstance(plaintext, str):
        plaintext = plaintext.encode()
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TypeError("encrypt() takes bytes or str")
    ring = keyring_id(tenant_id)
    return _seal(ring, _primary_version(ring), bytes(plaintext), table=table, row=str(row), field=field)


def _seal(ring: str, version: int, plaintext: bytes, *, table: str, row: str, field: str) -> str:
    aad = crypto.associated_data(tenant_id=ring, table=table, row=row, field=field, version=version)
    return crypto.seal(_load_key(ring, version), version, plaintext, aad)


def decrypt(*, tenant_id: str | None, token: str, table: str, row: str, field: str) -> bytes:
    """The plaintext of a token, or DecryptionError saying why not (never what it held)."""
    ring = keyring_id(tenant_id)
    where = f"{table}.{field} of row {row} ({_ring_label(ring)})"
    try:
        version, raw = crypto.parse_token(token)
        aead = _load_key(ring, version)
        aad = crypto.associated_data(tenant_id=ring, table=table, row=str(row), field=field, version=version)
        return crypto.open_sealed(aead, raw, aad)
    except KeyDestroyedError as exc:
        raise KeyDestroyedError(f"cannot decrypt {where}: {exc}") from None
    except DecryptionError as exc:
        if str(exc) == "authentication failed":
            raise DecryptionError(
                f"cannot decrypt {where}: the value was sealed for another tenant, table, row or field, "
                "or it was altered"
            ) from None
        raise DecryptionError(f"cannot decrypt {where}: {exc}") from None


# --- Keyrings -------------------------------------------------------------------------------
def _create_version(ring: Keyring, version: int) -> DataKey:
    provider = get_kek_provider()
    key = os.urandom(DATA_KEY_BYTES)
    wrapped = provider.wrap(key, context=_wrap_context(ring.tenant_id, version))
    del key
    _mark_uncommitted()
    # A version number names one key only while its row exists (a restored or flushed database
    # may reuse it): never let this process keep an older key under the same name.
    clear_key_cache(ring.tenant_id or None)
    return DataKey.objects.create(
        keyring=ring, tenant_id=ring.tenant_id, version=version, state=KeyState.PRIMARY,
        wrapped_key=wrapped, kek_id=provider.key_id,
    )


def _next_version(ring: Keyring) -> int:
    return (ring.versions.aggregate(top=Max("version"))["top"] or 0) + 1


def _locked_ring(ring_id: str) -> Keyring:
    ring, _ = Keyring.objects.get_or_create(tenant_id=ring_id)
    return Keyring.objects.select_for_update().get(pk=ring.pk)


def _ensure(ring_id: str, *, revive: bool) -> Keyring:
    with transaction.atomic():
        ring = _locked_ring(ring_id)
        if ring.destroyed_at is not None:
            if not revive:
                raise KeyringDestroyedError(f"the keys of {_ring_label(ring_id)} were destroyed")
            ring.destroyed_at = None
            ring.save(update_fields=["destroyed_at"])
        if not ring.versions.filter(state=KeyState.PRIMARY).exists():
            _create_version(ring, _next_version(ring))
        return ring


def ensure_tenant_keyring(*, tenant_id: str | None) -> Keyring:
    """The tenant's keyring with a primary data key, created when missing. A tenant id that is
    reused after its keys were destroyed gets new versions; the destroyed ones stay destroyed."""
    ring = _ensure(keyring_id(tenant_id), revive=True)
    clear_key_cache(tenant_id)
    return ring


# --- Audit (named in settings: audit sits above keys and is never imported here) ------------
def _audit(**event) -> None:
    path = settings.SWITCHYARD_KEYS_AUDIT_HOOK
    if not path:
        return
    try:
        hook: Callable = import_string(path)
    except ImportError:
        logger.error("key event %s not audited: SWITCHYARD_KEYS_AUDIT_HOOK %s cannot be imported",
                     event.get("action"), path)
        return
    hook(**event)


# --- Rotation -------------------------------------------------------------------------------
def rotate_tenant_key(*, tenant_id: str | None, actor=None, reason: str = "manual", request=None,
                      enqueue_reencrypt: bool = True) -> DataKey:
    """Make a new data key version primary; the old primary becomes decrypt-only until the
    re-encryption job has moved every row off it. Audited as key.rotate."""
    ring_id = keyring_id(tenant_id)
    with transaction.atomic():
        ring = _locked_ring(ring_id)
        if ring.destroyed_at is not None:
            raise KeyringDestroyedError(f"the keys of {_ring_label(ring_id)} were destroyed; they cannot be rotated")
        old = ring.versions.filter(state=KeyState.PRIMARY).first()
        if old is not None:
            old.state = KeyState.DECRYPT_ONLY
            old.demoted_at = timezone.now()
            old.save(update_fields=["state", "demoted_at"])
        new = _create_version(ring, _next_version(ring))
        _audit(
            action="key.rotate", tenant_id=tenant_id, actor=actor, request=request,
            resource_type="data_key", resource_id=f"{ring_id or 'platform'}:v{new.version}",
            metadata={"from_version": old.version if old else None, "to_version": new.version,
                      "reason": str(reason)[:100], "kek_id": new.kek_id},
        )
        transaction.on_commit(lambda: clear_key_cache(tenant_id))
        if enqueue_reencrypt:
            transaction.on_commit(lambda: enqueue_reencryption(tenant_id=tenant_id))
    clear_key_cache(tenant_id)
    logger.info("rotated data key", extra={"tenant_id": ring_id, "version": new.version, "reason": str(reason)[:100]})
    return new


def enqueue_reencryption(*, tenant_id: str | None) -> bool:
    """Queue the re-encryption task; a broker outage is logged, and the daily check catches up."""
    from .tasks import reencrypt_tenant_rows

    try:
        reencrypt_tenant_rows.delay(keyring_id(tenant_id))
    except Exception as exc:  # the broker being down must not undo a committed rotation
        logger.warning("re-encryption not queued; the daily key check will run it",
                       extra={"tenant_id": keyring_id(tenant_id), "error": exc.__class__.__name__})
        return False
    return True


def rotation_periods() -> dict[str, int]:
    """{keyring id: rotation days}. Tenant periods are read from the tenants table by name so
    this app never imports the tenants app."""
    from django.apps import apps

    periods = {"": settings.SWITCHYARD_PLATFORM_KEY_ROTATION_DAYS}
    if apps.is_installed("apps.tenants"):
        tenant_model = apps.get_model("tenants", "Tenant")
        periods.update({str(pk): days for pk, days in tenant_model.objects.values_list("pk", "key_rotation_days")})
    return periods


def rotate_due_keys(*, now=None) -> list[str]:
    """Rotate every keyring whose primary key is older than its period; returns keyring ids."""
    now = now or timezone.now()
    periods = rotation_periods()
    rotated = []
    primaries = DataKey.objects.filter(state=KeyState.PRIMARY, keyring__destroyed_at__isnull=True)
    for ring_id, created_at in primaries.values_list("tenant_id", "created_at"):
        if ring_id not in periods:
            continue  # the tenant row is gone; its keys are being destroyed with it
        if (now - created_at).total_seconds() >= periods[ring_id] * 86400:
            rotate_tenant_key(tenant_id=ring_id or None, reason="scheduled", enqueue_reencrypt=False)
            rotated.append(ring_id)
    return rotated


# --- Crypto-shredding -----------------------------------------------------------------------
def destroy_tenant_keys(*, tenant_id: str) -> int:
    """Destroy every data key of the tenant (its wrapped copies are erased), so its ciphertexts
    can never be read again. Returns how many versions were destroyed by this call."""
    if tenant_id is None or keyring_id(tenant_id) == "":
        raise KeysError("the platform keyring cannot be destroyed")
    ring_id = keyring_id(tenant_id)
    now = timezone.now()
    with transaction.atomic():
        ring = _locked_ring(ring_id)
        destroyed = ring.versions.exclude(state=KeyState.DESTROYED).update(
            state=KeyState.DESTROYED, wrapped_key=None, destroyed_at=now
        )
        ring.destroyed_at = ring.destroyed_at or now
        ring.save(update_fields=["destroyed_at"])
        ReencryptionJob.objects.filter(tenant_id=ring_id, status=JobStatus.RUNNING).update(
            status=JobStatus.CANCELLED, finished_at=now
        )
        transaction.on_commit(lambda: clear_key_cache(tenant_id))
    clear_key_cache(tenant_id)
    logger.info("destroyed data keys", extra={"tenant_id": ring_id, "versions": destroyed})
    return destroyed


# --- Re-encryption --------------------------------------------------------------------------
def _start_job(ring_id: str) -> ReencryptionJob | None:
    with transaction.atomic():
        ring = Keyring.objects.select_for_update().filter(tenant_id=ring_id, destroyed_at__isnull=True).first()
        primary = ring and ring.versions.filter(state=KeyState.PRIMARY).first()
        if primary is None:
            return None
        job = ReencryptionJob.objects.select_for_update().filter(tenant_id=ring_id, status=JobStatus.RUNNING).first()
        if job is None:
            job = ReencryptionJob(tenant_id=ring_id, target_version=primary.version)
        elif job.target_version != primary.version:
            # Rotated again since the job began: rows it moved are on an old version again.
            job.target_version, job.cursor = primary.version, {}
        job.runs += 1
        job.save()
        return job


def reencrypt_tenant(*, tenant_id: str | None, batch_size: int | None = None, pause: float = 0.0,
                     progress: Callable[[ReencryptionJob], None] | None = None) -> ReencryptionJob | None:
    """Move every row of the tenant onto its primary key version, batch by batch, then retire
    versions no row uses. Resumable: the cursor commits with each batch; a row already on the
    primary version is skipped, so a rerun never re-encrypts or double-wraps anything."""
    from .fields import encrypted_columns

    ring_id = keyring_id(tenant_id)
    batch_size = batch_size or settings.SWITCHYARD_KEYS_REENCRYPT_BATCH
    job = _start_job(ring_id)
    if job is None:
        return None
    columns = [column for column in encrypted_columns() if column.reencrypt]
    index = 0
    while index < len(columns):
        column = columns[index]
        state = job.cursor.get(column.label) or {}
        if state.get("done"):
            index += 1
            continue
        outcome = _reencrypt_batch(job, column, ring_id, batch_size)
        if outcome == "restart":
            index = 0
            continue
        if outcome == "stopped":
            return job
        if progress:
            progress(job)
        if pause:
            time.sleep(pause)
    _finish_job(job)
    return job


def _reencrypt_batch(job: ReencryptionJob, column, ring_id: str, batch_size: int) -> str:
    with transaction.atomic():
        locked = ReencryptionJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != JobStatus.RUNNING:
            job.status = locked.status
            return "stopped"
        primary = DataKey.objects.filter(tenant_id=ring_id, state=KeyState.PRIMARY).values_list("version", flat=True).first()
        if primary is None:
            return "stopped"
        if primary != locked.target_version:
            locked.target_version, locked.cursor = primary, {}
            locked.save(update_fields=["target_version", "cursor", "updated_at"])
            job.target_version, job.cursor = primary, {}
            return "restart"
        state = dict(locked.cursor.get(column.label) or {})
        rows = list(column.rows_off_version(ring_id, primary, after=state.get("after"))[:batch_size])
        changes = [change for change in (_reencrypted(column, ring_id, primary, pk, token) for pk, token in rows)
                   if change]
        failed = len(rows) - len(changes)
        moved = column.swap(changes)
        if rows:
            state["after"] = str(rows[-1][0])
        if len(rows) < batch_size:
            state["done"] = True
        locked.cursor = {**locked.cursor, column.label: state}
        locked.rows_reencrypted += moved
        locked.rows_failed += failed
        locked.save(update_fields=["cursor", "rows_reencrypted", "rows_failed", "updated_at"])
        job.cursor, job.rows_reencrypted, job.rows_failed = locked.cursor, locked.rows_reencrypted, locked.rows_failed
    return "ok"


def _reencrypted(column, ring_id: str, version: int, pk, token: str) -> tuple[object, str, str] | None:
    """(pk, old token, new token) for one row, or None when the old token cannot be opened."""
    table, field = column.model._meta.db_table, column.field_name
    tenant_id = ring_id or None
    try:
        plaintext = decrypt(tenant_id=tenant_id, token=token, table=table, row=str(pk), field=field)
    except DecryptionError as exc:
        logger.warning("row left on its old key version", extra={"column": column.label, "row": str(pk),
                                                                  "reason": str(exc)})
        return None
    # Sealed with the version read under the job's lock, not a possibly stale cached primary.
    return pk, token, _seal(ring_id, version, plaintext, table=table, row=str(pk), field=field)


def _finish_job(job: ReencryptionJob) -> None:
    from .selectors import version_row_counts

    with transaction.atomic():
        locked = ReencryptionJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != JobStatus.RUNNING:
            return
        retired = update_version_states(tenant_id=job.tenant_id or None, counts=version_row_counts(job.tenant_id))
        locked.status, locked.finished_at = JobStatus.COMPLETED, timezone.now()
        locked.save(update_fields=["status", "finished_at", "updated_at"])
        job.status, job.finished_at = locked.status, locked.finished_at
    logger.info("re-encryption finished", extra={"tenant_id": job.tenant_id, "rows": job.rows_reencrypted,
                                                 "failed": job.rows_failed, "retired": ",".join(map(str, retired))})


def update_version_states(*, tenant_id: str | None, counts: dict[int, int]) -> list[int]:
    """Retire old versions that protect no row (a retired key still opens a straggler written
    by a process whose cache had not yet seen the rotation; such a version returns to
    decrypt-only until the next job moves it). Returns the versions retired now."""
    ring_id = keyring_id(tenant_id)
    retired = []
    now = timezone.now()
    old_versions = DataKey.objects.select_for_update().filter(
        tenant_id=ring_id, state__in=[KeyState.DECRYPT_ONLY, KeyState.RETIRED]
    )
    for key in old_versions:
        in_use = counts.get(key.version, 0) > 0
        if key.state == KeyState.DECRYPT_ONLY and not in_use:
            key.state, key.retired_at = KeyState.RETIRED, now
            key.save(update_fields=["state", "retired_at"])
            retired.append(key.version)
            _audit(action="key.retire", tenant_id=tenant_id, actor=None, resource_type="data_key",
                   resource_id=f"{ring_id or 'platform'}:v{key.version}", metadata={"version": key.version})
        elif key.state == KeyState.RETIRED and in_use:
            key.state, key.retired_at = KeyState.DECRYPT_ONLY, None
            key.save(update_fields=["state", "retired_at"])
    return retired
