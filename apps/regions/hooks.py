"""Traffic-redirect hooks: told the new primary region of a model on every failover and failback.

A hook is a class with `redirect(*, event) -> str` (a short outcome for the event's record) that raises
HookError on failure, and a `from_settings()` constructor returning None when it is not configured. Two
kinds ship: a signed webhook, and a DNS hook that drives any `DnsProvider` (one method: point a record at a
target), so a provider's API client is one small subclass named in settings.

The webhook POSTs JSON with the headers the notification webhooks use: X-Switchyard-Event,
X-Switchyard-Delivery (the event id), X-Switchyard-Timestamp and, when a secret is set,
X-Switchyard-Signature: sha256=HEX(HMAC-SHA256(secret, "<timestamp>." + raw body)).
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import json
import logging
import time

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class HookError(Exception):
    """A hook could not redirect traffic; the message is safe to store and show (no secrets)."""


class RedirectHook(abc.ABC):
    name: str = "hook"

    @abc.abstractmethod
    def redirect(self, *, event) -> str:
        """Point traffic for event.model at event.to_region; return a short outcome or raise HookError."""

    @classmethod
    def from_settings(cls) -> RedirectHook | None:
        return cls()


def event_payload(event) -> dict:
    return {
        "id": str(event.id),
        "event": f"region.{event.kind}",
        "model": event.model,
        "from_region": event.from_region,
        "to_region": event.to_region,
        "primary": event.to_region,
        "reason": event.reason,
        "at": event.created_at.isoformat(),
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookRedirectHook(RedirectHook):
    name = "webhook"

    def __init__(self, url: str, secret: str | None = None, timeout: float = 5.0):
        self.url = url
        self.secret = secret
        self.timeout = timeout

    @classmethod
    def from_settings(cls) -> WebhookRedirectHook | None:
        url = settings.SWITCHYARD_FAILOVER_WEBHOOK_URL
        if not url:
            return None
        return cls(url, settings.SWITCHYARD_FAILOVER_WEBHOOK_SECRET, settings.SWITCHYARD_FAILOVER_HOOK_TIMEOUT_SECONDS)

    def redirect(self, *, event) -> str:
        body = json.dumps(event_payload(event), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Switchyard-Failover/1.0",
            "X-Switchyard-Event": f"region.{event.kind}",
            "X-Switchyard-Delivery": str(event.id),
            "X-Switchyard-Timestamp": timestamp,
        }
        if self.secret:
            headers["X-Switchyard-Signature"] = sign(self.secret, timestamp, body)
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout,
                                  follow_redirects=False)
        except httpx.HTTPError as exc:
            raise HookError(f"webhook unreachable: {exc.__class__.__name__}") from None
        if response.status_code >= 300:
            raise HookError(f"webhook answered HTTP {response.status_code}")
        return f"HTTP {response.status_code}"


class DnsProvider(abc.ABC):
    """A DNS API client: subclass it for Route 53, Cloudflare, NS1... and name the subclass in settings."""

    @abc.abstractmethod
    def point(self, *, record: str, target: str) -> None:
        """Make `record` resolve to `target` (a CNAME or the region endpoint's address); raise HookError."""


class DnsRedirectHook(RedirectHook):
    """Points `<model>.<zone>` (SWITCHYARD_FAILOVER_DNS_RECORD, with {model}) at the new region's endpoint
    (SWITCHYARD_FAILOVER_DNS_TARGETS: {"region id": "endpoint host"})."""

    name = "dns"

    def __init__(self, provider: DnsProvider, record: str, targets: dict[str, str]):
        self.provider = provider
        self.record = record
        self.targets = targets

    @classmethod
    def from_settings(cls) -> DnsRedirectHook | None:
        provider_path = getattr(settings, "SWITCHYARD_FAILOVER_DNS_PROVIDER", None)
        if not provider_path:
            return None
        return cls(import_string(provider_path)(), settings.SWITCHYARD_FAILOVER_DNS_RECORD,
                   dict(settings.SWITCHYARD_FAILOVER_DNS_TARGETS))

    def redirect(self, *, event) -> str:
        target = self.targets.get(event.to_region)
        if not target:
            raise HookError(f"no DNS target configured for region {event.to_region}")
        record = self.record.format(model=event.model)
        self.provider.point(record=record, target=target)
        return f"{record} -> {target}"


def configured_hooks() -> list[RedirectHook]:
    hooks: list[RedirectHook] = []
    for path in ["apps.regions.hooks.WebhookRedirectHook", "apps.regions.hooks.DnsRedirectHook",
                 *settings.SWITCHYARD_FAILOVER_HOOKS]:
        hook = import_string(path).from_settings()
        if hook is not None and not any(type(h) is type(hook) for h in hooks):
            hooks.append(hook)
    return hooks


def call_hooks(event, hooks: list[RedirectHook] | None = None) -> list[dict]:
    """Call every hook once; each outcome (or failure) is returned for the event's record, never raised."""
    results = []
    for hook in configured_hooks() if hooks is None else hooks:
        try:
            results.append({"hook": hook.name, "ok": True, "detail": hook.redirect(event=event)[:200]})
        except HookError as exc:
            logger.warning("redirect hook failed", extra={"hook": hook.name, "model": event.model, "error": str(exc)})
            results.append({"hook": hook.name, "ok": False, "detail": str(exc)[:200]})
        except Exception as exc:  # a third-party DNS client's bug must not stop the other hooks
            logger.exception("redirect hook crashed", extra={"hook": hook.name, "model": event.model})
            results.append({"hook": hook.name, "ok": False, "detail": f"hook error: {exc.__class__.__name__}"})
    return results
