"""Notification channels: send an event to a tenant's email, webhook and Slack-style channels.

`notify(...)` is what every app calls (quota violations, SLA alerts, budgets, failover). It picks
the tenant's enabled channels that want the event and, after the caller's transaction commits,
enqueues one Celery task per channel; the task delivers and retries with exponential backoff.

Webhooks receive the JSON payload with these headers, so a receiver can check the sender and drop
a redelivery: X-Switchyard-Event, X-Switchyard-Delivery (the same id on every retry),
X-Switchyard-Timestamp (unix seconds) and, when the channel has a secret,
X-Switchyard-Signature: sha256=HEX(HMAC-SHA256(secret, "<timestamp>." + raw body)).
Slack-style channels receive {"text": ...}; email goes through Django's mail backend.

Audit events are written through settings.SWITCHYARD_CORE_AUDIT_HOOK: core sits below audit, so
the function is named in settings, never imported here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import ChannelKind, NotificationChannel, NotificationEvent
from .redis import get_redis, key

logger = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
USER_AGENT = "Switchyard-Notifications/1.0"


class DeliveryError(Exception):
    """A send failed. `permanent` failures (bad address, 4xx) are not retried."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    detail: str


def _audit(**event) -> None:
    hook = getattr(settings, "SWITCHYARD_CORE_AUDIT_HOOK", "apps.audit.services.record_event")
    if hook:
        import_string(hook)(**event)


# --- Building and sending one message ---------------------------------------------------------


def build_payload(*, tenant_id: str, event: str, title: str, message: str, severity: str = "warning",
                  link: str | None = None) -> dict:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    if link and link.startswith("/"):
        link = settings.SITE_URL + link
    return {
        "id": uuid.uuid4().hex,
        "event": event,
        "tenant_id": tenant_id,
        "severity": severity,
        "title": title,
        "message": message,
        "link": link or None,
        "sent_at": timezone.now().isoformat(),
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _check_destination(url: str) -> None:
    """Refuse non-http(s) URLs and, unless allowed, private and loopback addresses (SSRF)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise DeliveryError("The channel URL must be an http(s) URL.", permanent=True)
    if settings.SWITCHYARD_NOTIFY_ALLOW_PRIVATE:
        return
    if parsed.scheme != "https":
        raise DeliveryError("The channel URL must use https.", permanent=True)
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except OSError:
        raise DeliveryError("The channel's host name does not resolve.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise DeliveryError("The channel URL points at a private or local address.", permanent=True)


def _post(url: str, body: bytes, headers: dict) -> None:
    _check_destination(url)
    try:
        response = httpx.post(url, content=body, headers=headers, follow_redirects=False,
                              timeout=settings.SWITCHYARD_NOTIFY_TIMEOUT_SECONDS)
    except httpx.TimeoutException:
        raise DeliveryError("The receiver did not answer in time.") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"Could not reach the receiver ({exc.__class__.__name__}).") from None
    if 200 <= response.status_code < 300:
        return
    # The URL is never part of the message: a Slack-style URL is itself a credential.
    transient = response.status_code in (408, 425, 429) or response.status_code >= 500
    raise DeliveryError(f"The receiver answered HTTP {response.status_code}.", permanent=not transient)


def send_to_channel(channel: NotificationChannel, payload: dict) -> None:
    """Deliver one payload to one channel now; raises DeliveryError."""
    if channel.kind == ChannelKind.EMAIL:
        subject = f"[Switchyard] [{payload['severity']}] {payload['title']}"
        lines = [payload["message"], "", f"Tenant: {payload['tenant_id']}", f"Event: {payload['event']}"]
        if payload.get("link"):
            lines.append(f"Details: {payload['link']}")
        try:
            send_mail(subject, "\n".join(lines), settings.DEFAULT_FROM_EMAIL, [channel.target], fail_silently=False)
        except (OSError, ConnectionError) as exc:
            raise DeliveryError(f"The mail server refused or could not be reached ({exc.__class__.__name__}).") from None
        return
    if channel.kind == ChannelKind.SLACK:
        text = f"*[{payload['severity']}] {payload['title']}*\n{payload['message']}"
        if payload.get("link"):
            text += f"\n<{payload['link']}|Open in Switchyard>"
        _post(channel.target, json.dumps({"text": text}).encode(), {"Content-Type": "application/json",
                                                                   "User-Agent": USER_AGENT})
        return
    if channel.kind == ChannelKind.WEBHOOK:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Switchyard-Event": payload["event"],
            "X-Switchyard-Delivery": payload["id"],
            "X-Switchyard-Timestamp": timestamp,
        }
        if channel.secret:
            headers["X-Switchyard-Signature"] = sign(channel.secret, timestamp, body)
        _post(channel.target, body, headers)
        return
    raise DeliveryError(f"Unknown channel kind {channel.kind!r}.", permanent=True)


def _mark(channel_id, *, ok: bool, detail: str = "") -> None:
    NotificationChannel.objects.filter(pk=channel_id).update(
        last_sent_at=timezone.now(), last_status="ok" if ok else "failed", last_error="" if ok else detail[:300],
    )


# --- The Celery task and the public entry points ------------------------------------------------


# max_retries=None: SWITCHYARD_NOTIFY_MAX_RETRIES (checked below) decides, not Celery's default of 3.
@shared_task(bind=True, acks_late=True, max_retries=None, name="apps.core.notifications.deliver_notification")
def deliver_notification(self, channel_id: str, payload: dict) -> str:
    """Send one payload to one channel; retried with exponential backoff on transient failures."""
    channel = NotificationChannel.objects.filter(pk=channel_id, enabled=True).first()
    if channel is None:
        return "skipped"
    try:
        send_to_channel(channel, payload)
    except DeliveryError as exc:
        retries_left = self.request.retries < settings.SWITCHYARD_NOTIFY_MAX_RETRIES
        logger.warning("notification delivery failed", extra={
            "channel": str(channel_id), "tenant_id": channel.tenant_id, "event": payload.get("event"),
            "error": exc.message, "permanent": exc.permanent, "attempt": self.request.retries + 1,
        })
        if exc.permanent or not retries_left:
            _mark(channel_id, ok=False, detail=exc.message)
            return "failed"
        raise self.retry(countdown=min(600, 10 * 2 ** self.request.retries), exc=exc) from None
    _mark(channel_id, ok=True)
    return "sent"


def _dedup_passes(tenant_id: str, dedup_key: str | None, seconds: int) -> bool:
    if not dedup_key:
        return True
    try:
        return bool(get_redis().set(key("notify", "dedup", tenant_id, dedup_key), "1", nx=True, ex=seconds))
    except Exception:  # Redis down: better a repeated alert than a lost one
        logger.warning("notification dedup unavailable; sending anyway", extra={"tenant_id": tenant_id})
        return True


def notify(*, tenant_id: str, event: str, title: str, message: str, severity: str = "warning",
           link: str | None = None, dedup_key: str | None = None, dedup_seconds: int | None = None) -> int:
    """Send an event to every enabled channel of the tenant that wants it, after the current
    transaction commits (synchronous code only: async callers wrap it in sync_to_async). With `dedup_key`, the same key sends at most once per `dedup_seconds`
    (default SWITCHYARD_NOTIFY_DEDUP_SECONDS). Returns how many channels were selected."""
    payload = build_payload(tenant_id=str(tenant_id), event=event, title=title, message=message,
                            severity=severity, link=link)
    channel_ids = [
        str(c.pk) for c in NotificationChannel.objects.filter(tenant_id=tenant_id, enabled=True)
        .only("pk", "events", "enabled") if c.wants(event)
    ]
    if not channel_ids:
        return 0
    seconds = dedup_seconds or settings.SWITCHYARD_NOTIFY_DEDUP_SECONDS

    def enqueue():
        if not _dedup_passes(str(tenant_id), dedup_key, seconds):
            return
        for channel_id in channel_ids:
            deliver_notification.delay(channel_id, payload)

    transaction.on_commit(enqueue)
    return len(channel_ids)


def send_test(*, channel: NotificationChannel, actor=None, request=None) -> DeliveryResult:
    """The console's "Send test" button: deliver now (not queued) and report the outcome."""
    payload = build_payload(
        tenant_id=channel.tenant_id, event=NotificationEvent.TEST, severity="info",
        title="Test notification", message=f"This is a test of the channel \"{channel.name}\" from Switchyard.",
        link=f"/notifications/{channel.tenant_id}/",
    )
    try:
        send_to_channel(channel, payload)
        result = DeliveryResult(True, "Delivered.")
    except DeliveryError as exc:
        result = DeliveryResult(False, exc.message)
    with transaction.atomic():
        _mark(channel.pk, ok=result.ok, detail=result.detail)
        _audit(action="notification_channel.test", tenant_id=channel.tenant_id, actor=actor, request=request,
               resource_type="notification_channel", resource_id=str(channel.pk),
               result="success" if result.ok else "failure",
               metadata={"kind": channel.kind, "name": channel.name, "detail": result.detail})
    return result


# --- Channel management (the console's writes) ----------------------------------------------


def create_channel(*, tenant_id: str, kind: str, name: str, target: str, secret: str | None = None,
                   events: list[str] | None = None, enabled: bool = True, actor=None, request=None) -> NotificationChannel:
    with transaction.atomic():
        channel = NotificationChannel(tenant_id=tenant_id, kind=kind, name=name, target=target,
                                      secret=secret or None, events=list(events or []), enabled=enabled)
        channel.full_clean()
        channel.save()
        _audit(action="notification_channel.create", tenant_id=tenant_id, actor=actor, request=request,
               resource_type="notification_channel", resource_id=str(channel.pk),
               metadata={"kind": kind, "name": name, "events": channel.events, "has_secret": bool(secret)})
    return channel


def update_channel(*, channel: NotificationChannel, actor=None, request=None, **changes) -> NotificationChannel:
    """Change fields; a `secret` of None or "" keeps the current one, `clear_secret=True` removes it."""
    clear_secret = changes.pop("clear_secret", False)
    secret = changes.pop("secret", None)
    allowed = {"kind", "name", "target", "events", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        for field, value in changes.items():
            setattr(channel, field, value)
        if clear_secret:
            channel.secret = None
        elif secret:
            channel.secret = secret
        channel.full_clean()
        channel.save()
        _audit(action="notification_channel.update", tenant_id=channel.tenant_id, actor=actor, request=request,
               resource_type="notification_channel", resource_id=str(channel.pk),
               metadata={"changed": sorted(set(changes) | ({"secret"} if secret or clear_secret else set()))})
    return channel


def delete_channel(*, channel: NotificationChannel, actor=None, request=None) -> None:
    with transaction.atomic():
        _audit(action="notification_channel.delete", tenant_id=channel.tenant_id, actor=actor, request=request,
               resource_type="notification_channel", resource_id=str(channel.pk),
               metadata={"kind": channel.kind, "name": channel.name})
        channel.delete()


def describe_target(channel: NotificationChannel) -> str:
    """What the console shows of a target: the address, or a URL's scheme and host only."""
    if channel.kind == ChannelKind.EMAIL:
        return channel.target
    parsed = urlparse(channel.target or "")
    return f"{parsed.scheme}://{parsed.hostname}/…" if parsed.hostname else "(invalid URL)"
