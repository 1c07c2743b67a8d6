"""Brute-force protection: failure counters in Redis per account and per client address."""

from __future__ import annotations

import hashlib

from django.conf import settings

from apps.core.redis import get_redis, key

# One message for every refusal, so a locked account and a missing one look the same.
LOCKED_MESSAGE = "Too many failed attempts. Wait a few minutes and try again."


def _account_key(identifier: str) -> str:
    digest = hashlib.sha256(identifier.strip().lower().encode()).hexdigest()[:32]
    return key("signin", "fail", "acct", digest)


def _ip_key(ip: str | None) -> str:
    return key("signin", "fail", "ip", ip or "unknown")


def is_locked(*, identifier: str, ip: str | None) -> bool:
    """True while either counter is at its limit; failures on missing accounts count too."""
    client = get_redis()
    account, by_ip = client.mget(_account_key(identifier), _ip_key(ip))
    return int(account or 0) >= settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT or int(by_ip or 0) >= settings.SIGNIN_MAX_FAILURES_PER_IP


def record_failure(*, identifier: str, ip: str | None) -> bool:
    """Count one failure; returns True when this failure locked the account or the address."""
    window = settings.SIGNIN_LOCKOUT_SECONDS
    pipe = get_redis().pipeline()
    pipe.incr(_account_key(identifier))
    pipe.expire(_account_key(identifier), window, nx=True)
    pipe.incr(_ip_key(ip))
    pipe.expire(_ip_key(ip), window, nx=True)
    account, _, by_ip, _ = pipe.execute()
    return account == settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT or by_ip == settings.SIGNIN_MAX_FAILURES_PER_IP


def record_success(*, identifier: str) -> None:
    """A correct sign-in clears the account's counter (the address counter runs out by itself)."""
    get_redis().delete(_account_key(identifier))
