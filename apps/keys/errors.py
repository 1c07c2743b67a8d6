"""Errors of the keys app. Messages name tables, rows and versions, never keys or plaintext."""


class KeysError(Exception):
    """Base of every error this app raises."""


class DecryptionError(KeysError):
    """A ciphertext cannot be opened: wrong binding, tampering, unknown or destroyed key."""


class KeyDestroyedError(DecryptionError):
    """The data key that sealed a value was destroyed (crypto-shredded); the value is gone."""


class KeyringDestroyedError(KeysError):
    """The tenant's keys were destroyed; nothing new may be encrypted for it."""


class KekUnavailableError(KeysError):
    """The key-encryption key cannot be loaded or does not match the wrapped data keys."""
