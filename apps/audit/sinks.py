"""Sinks beyond the database (JSON-lines file, syslog, HEC-style webhook) and the outbox that feeds them.

The event table is the outbox: appends to one chain commit in seq order (they hold the chain
head's lock), so each sink keeps a per-chain cursor and receives everything after it. A sink that
fails is retried with exponential backoff and receives the backlog when it returns; the cursor
moves only after the sink accepted a batch, so delivery is at-least-once to the transport and
each event carries its id for the receiver to deduplicate (the file sink skips ids it already holds).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import time
import zlib
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.db import connection

from .chain import format_time
from .models import PLATFORM_CHAIN, AuditEvent, SinkCursor, SinkState

logger = logging.getLogger(__name__)


class SinkError(Exception):
    """A sink did not accept a batch; it is retried later."""


def event_document(event: AuditEvent) -> dict:
    """The JSON a sink receives: every clear field plus the chain links; never the details."""
    return {
        "id": str(event.id),
        "tenant_id": event.tenant_id,
        "seq": event.seq,
        "time": format_time(event.occurred_at),
        "actor": {"type": event.actor_type, "id": event.actor_id, "label": event.actor_label, "user_id": event.user_id},
        "action": event.action,
        "resource": {"type": event.resource_type, "id": event.resource_id},
        "result": event.result,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "metadata": event.metadata,
        "details_encrypted": bool(event.details),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


class Sink(ABC):
    name = ""

    @abstractmethod
    def send(self, events: list[AuditEvent]) -> None:
        """Deliver a batch or raise SinkError."""


class FileSink(Sink):
    """JSON lines appended to a file, rotated by size (path.1 ... path.N)."""

    name = "file"
    TAIL_BYTES = 4 * 1024 * 1024

    def __init__(self, path: str, *, max_bytes: int, backups: int):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(1, backups)

    def _written_ids(self) -> set[str]:
        """Ids in the tails of the current and last rotated file: a batch re-sent after a crash
        is not written twice."""
        ids: set[str] = set()
        for path in (self.path, self.path.with_name(f"{self.path.name}.1")):
            if not path.exists():
                continue
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - self.TAIL_BYTES))
                for line in handle.read().splitlines():
                    try:
                        ids.add(json.loads(line)["id"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a partial first line of the tail window
        return ids

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def send(self, events: list[AuditEvent]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            written = self._written_ids()
            if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
                self._rotate()
            lines = [
                json.dumps(event_document(e), separators=(",", ":"), ensure_ascii=False) + "\n"
                for e in events if str(e.id) not in written
            ]
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(f"file sink {self.path}: {exc.strerror or exc}") from None


# RFC 5424 facility 13 is "log audit".
_FACILITY = 13
_SEVERITY = {"success": 6, "failure": 4, "denied": 4}


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(event: AuditEvent, *, hostname: str) -> bytes:
    """One RFC 5424 message: structured data names the event; the message is its JSON."""
    pri = _FACILITY * 8 + _SEVERITY.get(event.result, 6)
    msgid = "".join(ch for ch in event.action if 33 <= ord(ch) <= 126)[:32] or "-"
    sd = (
        f'[switchyard@32473 id="{event.id}" tenant="{_sd_escape(event.tenant_id or "platform")}" '
        f'seq="{event.seq}" result="{event.result}"]'
    )
    body = json.dumps(event_document(event), separators=(",", ":"), ensure_ascii=False)
    header = f"<{pri}>1 {format_time(event.occurred_at)} {hostname[:255] or '-'} switchyard {os.getpid()} {msgid} {sd} "
    return header.encode() + b"\xef\xbb\xbf" + body.encode()


class SyslogSink(Sink):
    """RFC 5424 over TCP (octet-counted framing, RFC 6587) or UDP (one datagram per event)."""

    name = "syslog"

    def __init__(self, url: str, *, timeout: float = 5.0):
        parsed = urlparse(url)
        if parsed.scheme not in ("tcp", "udp") or not parsed.hostname or not parsed.port:
            raise SinkError("SWITCHYARD_AUDIT_SYSLOG must look like tcp://host:port or udp://host:port")
        self.transport, self.host, self.port, self.timeout = parsed.scheme, parsed.hostname, parsed.port, timeout
        self.hostname = socket.gethostname()

    def send(self, events: list[AuditEvent]) -> None:
        messages = [syslog_message(e, hostname=self.hostname) for e in events]
        try:
            if self.transport == "tcp":
                with socket.create_connection((self.host, self.port), timeout=self.timeout) as conn:
                    conn.sendall(b"".join(str(len(m)).encode() + b" " + m for m in messages))
                    conn.shutdown(socket.SHUT_WR)
                    try:
                        # Wait for the listener to close its side: the bytes were read, not just
                        # buffered. A listener that keeps the connection open has them all the same.
                        conn.recv(1)
                    except TimeoutError:
                        pass
            else:
                with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM) as conn:
                    for message in messages:
                        conn.sendto(message, (self.host, self.port))
        except OSError as exc:
            raise SinkError(f"syslog {self.transport}://{self.host}:{self.port}: {exc.strerror or exc.__class__.__name__}") from None


class WebhookSink(Sink):
    """Splunk-HEC-style: a POST of concatenated {"time", "host", "source", "sourcetype", "event"}
    objects with `Authorization: Splunk <token>`; each event carries its id for deduplication."""

    name = "webhook"

    def __init__(self, url: str, *, token: str | None, verify_tls: bool = True, timeout: float = 10.0):
        self.url, self.token, self.verify_tls, self.timeout = url, token, verify_tls, timeout
        self.hostname = socket.gethostname()

    def send(self, events: list[AuditEvent]) -> None:
        import httpx

        body = "\n".join(
            json.dumps({
                "time": round(e.occurred_at.timestamp(), 6),
                "host": self.hostname,
                "source": "switchyard",
                "sourcetype": "switchyard:audit",
                "index": None,
                "fields": {"event_id": str(e.id), "tenant": e.tenant_id or "platform"},
                "event": event_document(e),
            }, separators=(",", ":"), ensure_ascii=False)
            for e in events
        )
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Splunk {self.token}"
        try:
            response = httpx.post(
                self.url, content=body.encode(), headers=headers, timeout=self.timeout,
                verify=ssl.create_default_context() if self.verify_tls else False,
            )
        except httpx.HTTPError as exc:
            raise SinkError(f"webhook: {exc.__class__.__name__}") from None
        if response.status_code >= 300:
            raise SinkError(f"webhook answered HTTP {response.status_code}")


def enabled_sinks() -> list[Sink]:
    sinks: list[Sink] = []
    if settings.SWITCHYARD_AUDIT_FILE_SINK:
        sinks.append(FileSink(
            settings.SWITCHYARD_AUDIT_FILE_SINK,
            max_bytes=settings.SWITCHYARD_AUDIT_FILE_MAX_BYTES, backups=settings.SWITCHYARD_AUDIT_FILE_BACKUPS,
        ))
    if settings.SWITCHYARD_AUDIT_SYSLOG:
        sinks.append(SyslogSink(settings.SWITCHYARD_AUDIT_SYSLOG))
    if settings.SWITCHYARD_AUDIT_WEBHOOK_URL:
        sinks.append(WebhookSink(
            settings.SWITCHYARD_AUDIT_WEBHOOK_URL, token=settings.SWITCHYARD_AUDIT_WEBHOOK_TOKEN,
            verify_tls=settings.SWITCHYARD_AUDIT_WEBHOOK_VERIFY_TLS,
        ))
    return sinks


def undelivered_floor(chain: str) -> int | None:
    """The highest seq every enabled sink has received for a chain (None with no sinks): retention
    never deletes what a sink has not yet had."""
    names = [sink.name for sink in enabled_sinks()]
    if not names:
        return None
    cursors = dict(SinkCursor.objects.filter(chain=chain, sink__in=names).values_list("sink", "delivered_seq"))
    return min(cursors.get(name, 0) for name in names)


def backoff_seconds(failures: int) -> float:
    base = settings.SWITCHYARD_AUDIT_SINK_BACKOFF_SECONDS
    return float(min(settings.SWITCHYARD_AUDIT_SINK_BACKOFF_MAX_SECONDS, base * 2 ** max(0, failures - 1)))


_PENDING_SQL = """
SELECT h.chain, COALESCE(c.delivered_seq, 0)
  FROM audit_chain_head h
  LEFT JOIN audit_sink_cursor c ON c.chain = h.chain AND c.sink = %s
 WHERE h.last_seq > COALESCE(c.delivered_seq, 0)
 ORDER BY h.chain
"""


def _lock_id(name: str) -> int:
    return zlib.crc32(f"switchyard-audit-sink:{name}".encode())


def deliver_to_sink(sink: Sink, *, now: datetime | None = None, time_budget: float = 30.0) -> int:
    """Send a sink everything after its cursors, batch by batch. Returns events delivered; on a
    failure records it and schedules the next attempt. One deliverer per sink at a time."""
    now = now or datetime.now(UTC)
    state, _ = SinkState.objects.get_or_create(sink=sink.name)
    if state.next_attempt_at and state.next_attempt_at > now:
        return 0
    batch = settings.SWITCHYARD_AUDIT_SINK_BATCH
    delivered = 0
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_lock_id(sink.name)])
        if not cursor.fetchone()[0]:
            return 0
    try:
        with connection.cursor() as cursor:
            cursor.execute(_PENDING_SQL, [sink.name])
            pending = cursor.fetchall()
        for chain, after in pending:
            while time.monotonic() - started < time_budget:
                scope = {"tenant_id__isnull": True} if chain == PLATFORM_CHAIN else {"tenant_id": chain}
                events = list(AuditEvent.objects.filter(**scope, seq__gt=after).defer("search").order_by("seq")[:batch])
                if not events:
                    break
                sink.send(events)
                after = events[-1].seq
                SinkCursor.objects.update_or_create(sink=sink.name, chain=chain, defaults={"delivered_seq": after})
                delivered += len(events)
                if len(events) < batch:
                    break
    except SinkError as exc:
        state.failures += 1
        state.last_error = str(exc)[:500]
        state.next_attempt_at = now + timedelta(seconds=backoff_seconds(state.failures))
        state.delivered_total += delivered
        state.save()
        logger.warning("audit sink failed", extra={"sink": sink.name, "failures": state.failures, "error": state.last_error})
        return delivered
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_lock_id(sink.name)])
    state.failures = 0
    state.last_error = ""
    state.next_attempt_at = None
    if delivered:
        state.last_success_at = now
    state.delivered_total += delivered
    state.save()
    return delivered


def deliver_outbox(*, now: datetime | None = None) -> dict[str, int]:
    return {sink.name: deliver_to_sink(sink, now=now) for sink in enabled_sinks()}
