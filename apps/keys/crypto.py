"""The ciphertext format: `sy1:<version>:<base64url(nonce || ciphertext || tag)>`, AES-256-GCM,
with tenant, table, row, field and version bound as associated data."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError

PREFIX = "sy1"
NONCE_BYTES = 12
_TOKEN = re.compile(r"^sy1:([1-9][0-9]{0,9}):([A-Za-z0-9_-]+)$")


def version_prefix(version: int) -> str:
    """What every token sealed by this key version starts with (used to find and count rows)."""
    return f"{PREFIX}:{version}:"


def associated_data(*, tenant_id: str, table: str, row: str, field: str, version: int) -> bytes:
    # JSON keeps the parts unambiguous whatever characters they contain.
    return json.dumps([PREFIX, tenant_id, table, str(row), field, version], separators=(",", ":")).encode()


def parse_token(token: str) -> tuple[int, bytes]:
    """(version, nonce||ciphertext) of a token, or DecryptionError when it is not one."""
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if not match:
        raise DecryptionError("the value is not a Switchyard ciphertext (expected sy1:<version>:<data>)")
    body = match.group(2)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise DecryptionError("the ciphertext is not valid base64") from None
    if len(raw) < NONCE_BYTES + 16:
        raise DecryptionError("the ciphertext is truncated")
    return int(match.group(1)), raw


def token_version(token: str) -> int:
    return parse_token(token)[0]


def seal(aead: AESGCM, version: int, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    raw = nonce + aead.encrypt(nonce, plaintext, aad)
    return version_prefix(version) + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def open_sealed(aead: AESGCM, raw: bytes, aad: bytes) -> bytes:
    try:
        return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError("authentication failed") from None
