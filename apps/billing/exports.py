"""Invoice and allocation documents: CSV (amounts as exact decimal strings) and PDF (reportlab)."""

from __future__ import annotations

import csv
import io

from .models import Invoice
from .money import period_label


def _csv_safe(value) -> str:
    # Spreadsheets execute a cell that starts with = + - @; model names and labels come from users.
    text = "" if value is None else str(value)
    if text and text[0] in "=+@\t\r" or (text.startswith("-") and not _is_number(text)):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def invoice_csv(invoice: Invoice) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "kind", "tenant", "period", "currency", "issued_at", "corrects"])
    writer.writerow([invoice.number, invoice.kind, invoice.tenant_id, period_label(invoice.period_start),
                     invoice.currency, invoice.issued_at.isoformat(),
                     invoice.corrects.number if invoice.corrects_id else ""])
    writer.writerow([])
    writer.writerow(["position", "kind", "description", "model", "department_id", "requests", "prompt_tokens",
                     "completion_tokens", "cost_unrounded", "amount"])
    for line in invoice.lines.all():
        writer.writerow([line.position, line.kind, _csv_safe(line.description), _csv_safe(line.model),
                         line.department_id or "", line.requests, line.prompt_tokens, line.completion_tokens,
                         line.cost, line.amount])
    writer.writerow([])
    writer.writerow(["subtotal", invoice.subtotal])
    writer.writerow(["credits", invoice.credits])
    writer.writerow(["total", invoice.total])
    return out.getvalue()


def allocation_csv(alloc) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["tenant", "start", "end", "currency", "dimension", "key", "label", "unattributed", "requests",
                     "prompt_tokens", "completion_tokens", "cost", "amount", "share_percent"])
    writer.writerow([alloc.tenant_id, alloc.start.isoformat(), alloc.end.isoformat(), alloc.currency, "total", "",
                     "Total", "", alloc.requests, alloc.prompt_tokens, alloc.completion_tokens, alloc.cost,
                     alloc.amount, "100"])
    for dim, rows in alloc.by.items():
        for row in rows:
            writer.writerow([alloc.tenant_id, alloc.start.isoformat(), alloc.end.isoformat(), alloc.currency, dim,
                             row.key or "", _csv_safe(row.label), "yes" if row.unattributed else "", row.requests,
                             row.prompt_tokens, row.completion_tokens, row.cost, row.amount, f"{row.share:.2f}"])
    return out.getvalue()


def invoice_pdf(invoice: Invoice, tenant_name: str) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            title=f"{invoice.get_kind_display()} {invoice.number}")
    styles = getSampleStyleSheet()
    story = [
        Paragraph(f"{invoice.get_kind_display()} {invoice.number}", styles["Title"]),
        Paragraph(f"Tenant: {tenant_name} ({invoice.tenant_id})", styles["Normal"]),
        Paragraph(f"Period: {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d} (UTC, end exclusive)",
                  styles["Normal"]),
        Paragraph(f"Issued: {invoice.issued_at:%Y-%m-%d %H:%M} UTC &nbsp; Currency: {invoice.currency}",
                  styles["Normal"]),
    ]
    if invoice.corrects_id:
        story.append(Paragraph(f"Corrects invoice {invoice.corrects.number}: {invoice.reason}", styles["Normal"]))
    story.append(Spacer(1, 6 * mm))
    small = styles["BodyText"]
    small.fontSize = 8
    rows = [["#", "Description", "Requests", "Tokens in", "Tokens out", f"Amount ({invoice.currency})"]]
    for line in invoice.lines.all():
        rows.append([str(line.position), Paragraph(line.description.replace("&", "&amp;").replace("<", "&lt;"), small),
                     f"{line.requests:,}", f"{line.prompt_tokens:,}", f"{line.completion_tokens:,}", f"{line.amount:,}"])
    rows += [["", "Subtotal", "", "", "", f"{invoice.subtotal:,}"],
             ["", "SLA credits", "", "", "", f"-{invoice.credits:,}"],
             ["", "Total due", "", "", "", f"{invoice.total:,}"]]
    table = Table(rows, colWidths=[10 * mm, 80 * mm, 20 * mm, 22 * mm, 22 * mm, 26 * mm], repeatRows=1)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("ALIGN", (2, 0), (-1, -1), "RIGHT"), ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
        ("LINEABOVE", (0, -3), (-1, -3), 0.5, colors.grey), ("FONT", (0, -1), (-1, -1), "Helvetica-Bold"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    story.append(table)
    if invoice.unpriced_requests:
        story += [Spacer(1, 4 * mm), Paragraph(
            f"{invoice.unpriced_requests:,} requests to models without a price were not billed.", small)]
    doc.build(story)
    return buffer.getvalue()
