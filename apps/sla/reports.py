"""SLA reports: a tenant's compliance over a period as a PDF (reportlab) and a CSV, read from rollups."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from . import compliance
from .models import AlertEvent, ReportStatus, SlaReport, SlaViolation

REPORT_DIR = "sla-reports"


def report_dir(tenant_id: str) -> Path:
    return Path(settings.MEDIA_ROOT) / REPORT_DIR / tenant_id


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}{(' ' + unit) if unit else ''}" if isinstance(value, float) else f"{value}{(' ' + unit) if unit else ''}"


def _daily(tenant_id: str, start: datetime, end: datetime) -> list[dict]:
    days = []
    day = start
    while day < end:
        nxt = min(day + timedelta(days=1), end)
        t = compliance.totals(tenant_id=tenant_id, start=day, end=nxt)
        days.append({"date": day.date().isoformat(), "requests": t.requests, "failures": t.failures, **t.metrics(),
                     "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens, "cost": t.cost})
        day = nxt
    return days


def build(report: SlaReport) -> SlaReport:
    """Compute the report's content and write its two files; safe to run again (files are replaced)."""
    from .services import credits_for_period, policy_for

    tenant = report.tenant
    policy = policy_for(tenant)
    start, end = report.period_start, report.period_end
    total = compliance.totals(tenant_id=tenant.pk, start=start, end=end)
    metrics = total.metrics()
    violations = compliance.compare(policy, metrics, period="report")
    days = _daily(tenant.pk, start, end)
    credits = credits_for_period(tenant_id=tenant.pk, start=start, end=end)
    history = list(SlaViolation.objects.filter(tenant=tenant, started_at__lt=end).exclude(resolved_at__lt=start)[:200])
    alert_events = list(AlertEvent.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)[:200])
    summary = {
        "requests": total.requests, "counted": total.counted, "failures": total.failures,
        "metrics": metrics, "targets": {k: (float(v) if v is not None else None) for k, v in policy.targets().items()},
        "violations": violations, "compliant": not violations, "policy": policy.name,
        "credit_percent": str(credits[0].credit_percent) if credits else "0",
        "cost": str(total.cost), "alerts": len(alert_events),
    }

    folder = report_dir(tenant.pk)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{report.pk}.csv"
    pdf_path = folder / f"{report.pk}.pdf"
    csv_path.write_text(_csv(days))
    pdf_path.write_bytes(_pdf(report, policy, summary, days, history, alert_events))

    with transaction.atomic():
        report.status = ReportStatus.READY
        report.summary = summary
        report.csv_path = str(csv_path.relative_to(settings.MEDIA_ROOT))
        report.pdf_path = str(pdf_path.relative_to(settings.MEDIA_ROOT))
        report.finished_at = datetime.now(UTC)
        report.error = ""
        report.save()
    return report


def _csv(days: list[dict]) -> str:
    out = io.StringIO()
    columns = ["date", "requests", "failures", "availability", "error_rate", "latency_p50", "latency_p95",
               "latency_p99", "response_time", "throughput", "prompt_tokens", "completion_tokens", "cost"]
    header = ["date", "requests", "failures", "availability_pct", "error_rate_pct", "latency_p50_ms", "latency_p95_ms",
              "latency_p99_ms", "response_time_ms", "throughput_tokens_per_s", "prompt_tokens", "completion_tokens", "cost"]
    writer = csv.writer(out)
    writer.writerow(header)
    for day in days:
        writer.writerow(["" if day[c] is None else (f"{day[c]:.3f}" if isinstance(day[c], float) else day[c]) for c in columns])
    return out.getvalue()


def _pdf(report, policy, summary, days, history, alert_events) -> bytes:
    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, title=f"SLA report {report.tenant_id}")
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                       ("FONTSIZE", (0, 0), (-1, -1), 8)])
    story = [
        Paragraph(f"SLA report — {report.tenant.name} ({report.tenant_id})", styles["Title"]),
        Paragraph(f"Period {report.period_start:%Y-%m-%d %H:%M} to {report.period_end:%Y-%m-%d %H:%M} UTC · "
                  f"policy {policy.name} ({policy.get_window_display()})", styles["Normal"]),
        Spacer(1, 8),
        Paragraph(f"Requests {summary['requests']:,} · server-side failures {summary['failures']:,} · "
                  f"{'compliant' if summary['compliant'] else 'NOT compliant'} · SLA credit {summary['credit_percent']} %",
                  styles["Normal"]),
        Spacer(1, 8),
    ]
    rows = [["Metric", "Target", "Actual", "Met"]]
    for metric, (label, unit, direction) in compliance.METRICS.items():
        target, actual = summary["targets"].get(metric), summary["metrics"].get(metric)
        met = "—" if target is None or actual is None else ("yes" if (actual >= target if direction == "min" else actual <= target) else "NO")
        rows.append([label, _fmt(target, unit) if target is not None else "not promised", _fmt(actual, unit), met])
    story += [Table(rows, style=grid), Spacer(1, 10), Paragraph("Daily", styles["Heading2"])]
    daily = [["Date", "Requests", "Avail. %", "Err. %", "p50 ms", "p95 ms", "p99 ms"]]
    for d in days:
        daily.append([d["date"], f"{d['requests']:,}", _fmt(d["availability"]), _fmt(d["error_rate"]),
                      _fmt(d["latency_p50"]), _fmt(d["latency_p95"]), _fmt(d["latency_p99"])])
    story += [Table(daily, style=grid, repeatRows=1), Spacer(1, 10), Paragraph("Violations", styles["Heading2"])]
    if history:
        vrows = [["Metric", "Period", "Expected", "Actual", "Severity", "Started", "Resolved"]]
        for v in history:
            vrows.append([v.metric, v.period, f"{v.expected} {v.unit}", f"{v.actual} {v.unit}", v.severity,
                          f"{v.started_at:%Y-%m-%d %H:%M}", f"{v.resolved_at:%Y-%m-%d %H:%M}" if v.resolved_at else "open"])
        story.append(Table(vrows, style=grid, repeatRows=1))
    else:
        story.append(Paragraph("No violations were recorded in this period.", styles["Normal"]))
    story += [Spacer(1, 10), Paragraph("Alerts", styles["Heading2"])]
    if alert_events:
        arows = [["Time", "Rule", "Kind", "Severity"]]
        arows += [[f"{a.created_at:%Y-%m-%d %H:%M}", a.rule, a.kind, a.severity] for a in alert_events]
        story.append(Table(arows, style=grid, repeatRows=1))
    else:
        story.append(Paragraph("No alerts fired in this period.", styles["Normal"]))
    doc.build(story)
    return buffer.getvalue()
