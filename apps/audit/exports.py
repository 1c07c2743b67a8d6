"""Exports of a search result (CSV or JSON, streamed) and of compliance reports; every export is audited."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone

from .chain import format_time
from .models import AuditEvent
from .selectors import EventFilters, auditable_tenant_ids, details_of
from .services import record_event

CSV_COLUMNS = [
    "id", "time", "tenant", "seq", "actor_type", "actor", "user_id", "action", "resource_type", "resource_id",
    "result", "ip", "user_agent", "request_id", "metadata", "hash",
]


def event_row(event: AuditEvent) -> dict:
    return {
        "id": str(event.id), "time": format_time(event.occurred_at), "tenant": event.tenant_id or "platform",
        "seq": event.seq, "actor_type": event.actor_type, "actor": event.actor_label, "user_id": event.user_id,
        "action": event.action, "resource_type": event.resource_type, "resource_id": event.resource_id,
        "result": event.result, "ip": event.ip, "user_agent": event.user_agent, "request_id": event.request_id,
        "metadata": event.metadata, "hash": event.hash,
    }


def _csv_safe(value) -> str:
    """Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else ("" if value is None else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        row = event_row(event)
        writer.writerow([_csv_safe(row[c]) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def json_lines(events: Iterable[AuditEvent], *, user, with_details: bool) -> Iterator[str]:
    yield "["
    first = True
    for event in events:
        row = event_row(event)
        if with_details:
            row["details"] = details_of(user, event)
        yield ("" if first else ",") + "\n" + json.dumps(row, ensure_ascii=False)
        first = False
    yield "\n]\n"


def record_export(*, user, request, filters: EventFilters, what: str, fmt: str) -> None:
    """An export is audited on each chain it may draw from (the filtered tenant, or all the user's)."""
    if filters.tenant:
        tenants: list[str | None] = [None if filters.tenant == "platform" else filters.tenant]
    else:
        allowed = auditable_tenant_ids(user)
        tenants = [None] if allowed is None else list(allowed)
    for tenant_id in tenants:
        record_event(
            action="audit.export", tenant_id=tenant_id, actor=user, request=request, resource_type="audit_events",
            metadata={"what": what, "format": fmt, "filters": filters.as_dict()},
        )


def export_response(*, user, request, events, filters: EventFilters, fmt: str, with_details: bool = False):
    limit = settings.SWITCHYARD_AUDIT_EXPORT_MAX_ROWS
    # The result as of now: the export's own event, recorded next, is not part of it.
    events = events.filter(occurred_at__lte=timezone.now())
    record_export(user=user, request=request, filters=filters, what="events", fmt=fmt)
    rows = events.defer("search")[:limit].iterator(chunk_size=2000)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "csv":
        response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(json_lines(rows, user=user, with_details=with_details), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-events-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


def compliance_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "key", "value"])
    for key in ("tenant", "tenant_name", "total_actions", "unique_users", "success_rate", "checkpoints"):
        writer.writerow(["summary", key, _csv_safe(report.get(key))])
    writer.writerow(["summary", "since", report["period"]["since"]])
    writer.writerow(["summary", "until", report["period"]["until"]])
    for key, value in report["results"].items():
        writer.writerow(["results", key, value])
    for key, value in report["retention"].items():
        writer.writerow(["retention", key, _csv_safe(value)])
    for key, value in report["encryption"].items():
        writer.writerow(["encryption", key, _csv_safe(value)])
    for key, value in (report.get("chain_verification") or {}).items():
        writer.writerow(["chain_verification", key, _csv_safe(value)])
    writer.writerow([])
    writer.writerow(["action", "count", "successes", "success_rate"])
    for row in report["by_action"]:
        writer.writerow([_csv_safe(row["action"]), row["count"], row["successes"], row["success_rate"]])
    return buffer.getvalue()


def compliance_download(*, user, request, report: dict, fmt: str):
    from django.http import HttpResponse

    tenant = report["tenant"]
    record_event(
        action="audit.export", tenant_id=None if tenant == "platform" else tenant, actor=user, request=request,
        resource_type="compliance_report", resource_id=tenant,
        metadata={"what": "compliance_report", "format": fmt, "period": report["period"]},
    )
    if fmt == "csv":
        response = HttpResponse(compliance_csv(report), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(report, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-compliance-{tenant}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response
