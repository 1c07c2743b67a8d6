"""Key-encryption key (KEK) providers: the one place a data key is wrapped or unwrapped."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .errors import KekUnavailableError

logger = logging.getLogger(__name__)

DEV_KEK_FILE_NAME = "dev-kek.b64"


class KekProvider(ABC):
    """Wraps and unwraps data keys. A cloud KMS or Vault transit engine can implement this:
    `context` maps to the KMS encryption context, `key_id` names the key in the provider."""

    key_id: str

    @abstractmethod
    def wrap(self, plaintext: bytes, *, context: bytes = b"") -> bytes: ...

    @abstractmethod
    def unwrap(self, wrapped: bytes, *, context: bytes = b"") -> bytes: ...


class LocalKekProvider(KekProvider):
    """AES-256-GCM under a 32-byte KEK held in process memory (from the environment or a file)."""

    def __init__(self, kek: bytes):
        if len(kek) != 32:
            raise ImproperlyConfigured("SWITCHYARD_KEK must decode to exactly 32 bytes")
        self._aead = AESGCM(kek)
        # A fingerprint lets a wrapped key say which KEK sealed it without revealing the KEK.
        self.key_id = "local:" + hashlib.sha256(b"switchyard-kek-id\x00" + kek).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<LocalKekProvider {self.key_id}>"

    def wrap(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, self.key_id.encode() + b"\x00" + context)

    def unwrap(self, wrapped: bytes, *, context: bytes = b"") -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], self.key_id.encode() + b"\x00" + context)
        except (InvalidTag, ValueError):
            raise KekUnavailableError(
                f"a data key cannot be unwrapped with KEK {self.key_id}: wrong KEK or damaged key record"
            ) from None

    @classmethod
    def from_settings(cls) -> LocalKekProvider:
        return cls(load_kek_bytes())


def _decode_kek(text: str) -> bytes:
    try:
        value = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured("SWITCHYARD_KEK must be base64 of 32 random bytes") from None
    if len(value) != 32:
        raise ImproperlyConfigured("SWITCHYARD_KEK must decode to exactly 32 bytes")
    return value


def load_kek_bytes() -> bytes:
    """The KEK from settings; outside production a stable development KEK from a file."""
    if settings.SWITCHYARD_KEK:
        return _decode_kek(settings.SWITCHYARD_KEK)
    if settings.PRODUCTION:
        raise ImproperlyConfigured("SWITCHYARD_KEK (or SWITCHYARD_KEK_FILE) is required in production")
    return _decode_kek(_dev_kek_text(Path(settings.SWITCHYARD_DATA_DIR) / DEV_KEK_FILE_NAME))


def _dev_kek_text(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when several processes start at once exactly one creates the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        logger.warning("SWITCHYARD_KEK is not set: using the development KEK file %s", path)
        return path.read_text()
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    logger.warning("SWITCHYARD_KEK is not set: generated a development KEK in %s (never use in production)", path)
    return path.read_text()


@lru_cache(maxsize=1)
def get_kek_provider() -> KekProvider:
    """The configured provider (settings.SWITCHYARD_KEK_PROVIDER), built once per process."""
    provider_class = import_string(settings.SWITCHYARD_KEK_PROVIDER)
    if not isinstance(provider_class, type) or not issubclass(provider_class, KekProvider):
        raise ImproperlyConfigured("SWITCHYARD_KEK_PROVIDER must name a KekProvider subclass")
    return provider_class.from_settings()
