"""The Ed25519 key that signs checkpoints: read from the environment (or a file), never the database."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_lock = threading.Lock()
_private_key: Ed25519PrivateKey | None = None

DEV_KEY_FILE = "audit-signing.key"


class SigningKeyError(ImproperlyConfigured):
    pass


def _decode_seed(text: str, source: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{source} is not valid base64") from None
    if len(seed) != 32:
        raise SigningKeyError(f"{source} must decode to 32 bytes (an Ed25519 seed), got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _development_key() -> Ed25519PrivateKey:
    """Outside production a missing key is generated once under SWITCHYARD_DATA_DIR (mode 0600)."""
    path = Path(settings.SWITCHYARD_DATA_DIR) / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = base64.b64encode(os.urandom(32)).decode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read its key
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(seed + "\n")
    return _decode_seed(path.read_text(), str(path))


def private_key() -> Ed25519PrivateKey:
    global _private_key
    if _private_key is None:
        with _lock:
            if _private_key is None:
                configured = settings.SWITCHYARD_AUDIT_SIGNING_KEY
                if configured:
                    _private_key = _decode_seed(configured, "SWITCHYARD_AUDIT_SIGNING_KEY")
                elif settings.PRODUCTION:
                    raise SigningKeyError("SWITCHYARD_AUDIT_SIGNING_KEY (or _FILE) is required in production")
                else:
                    _private_key = _development_key()
    return _private_key


def reset() -> None:
    """Forget the loaded key (tests that change the setting call this)."""
    global _private_key
    with _lock:
        _private_key = None


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]


def current_public_key() -> Ed25519PublicKey:
    return private_key().public_key()


def current_key_id() -> str:
    return key_id_of(current_public_key())


def public_key_b64() -> str:
    """The published verification key (base64 of the raw 32 bytes)."""
    return base64.b64encode(public_key_bytes(current_public_key())).decode()


def public_key_pem() -> str:
    return current_public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def trusted_keys() -> dict[str, Ed25519PublicKey]:
    """key id -> public key: the current key plus retired ones still trusted for old checkpoints."""
    keys = {current_key_id(): current_public_key()}
    for text in settings.SWITCHYARD_AUDIT_TRUSTED_KEYS:
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise SigningKeyError("SWITCHYARD_AUDIT_TRUSTED_KEYS holds a value that is not a base64 Ed25519 public key") from None
        keys[key_id_of(key)] = key
    return keys


def sign(payload: bytes) -> str:
    return base64.b64encode(private_key().sign(payload)).decode()


def verify(payload: bytes, signature_b64: str, key_id: str) -> bool:
    key = trusted_keys().get(key_id)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), payload)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
