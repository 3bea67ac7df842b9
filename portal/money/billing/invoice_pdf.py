"""An invoice as a one-page A4 PDF (ReportLab): the seller's legal details from configuration
(``BILLING_LEGAL_NAME``, ``BILLING_LEGAL_ADDRESS``, ``BILLING_TAX_ID``), the customer, the
number, dates and status, every line with its amount and the total."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import reportlab
from flask import current_app
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from portal.accounts.models import User
from portal.money.billing import queries
from portal.money.currency import format_amount

ACCENT = HexColor("#0f766e")
INK = HexColor("#1f2937")
MUTED = HexColor("#6b7280")

#: Bitstream Vera ships with ReportLab: embedded, so any customer's name prints.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
_FONTS = {"regular": ("AzoraVera", "Vera.ttf"), "bold": ("AzoraVeraBold", "VeraBd.ttf")}


def _font(style: str) -> str:
    name, filename = _FONTS[style]
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / filename)))
    return name


def legal_details() -> tuple[str, list[str], str]:
    """(name, address lines, tax id) of the seller, from configuration."""
    config = current_app.config
    name = str(config.get("BILLING_LEGAL_NAME") or "Azora Portal").strip()
    address = [part.strip() for part in str(config.get("BILLING_LEGAL_ADDRESS") or "").replace("\\n", "\n")
               .replace(";", "\n").splitlines() if part.strip()]
    return name, address, str(config.get("BILLING_TAX_ID") or "").strip()


def invoice_pdf(viewer: User, invoice_id: uuid.UUID | str) -> bytes:
    """The invoice as PDF bytes for its owner or staff (``queries.invoice`` decides: NotFound
    for anyone else)."""
    return render(queries.invoice(viewer, invoice_id))


@dataclass(frozen=True)
class Contents:
    """Everything the PDF prints, in order (also what a test reads: the PDF's own text is
    encoded in the embedded font's subset)."""

    title: str
    seller: list[str]
    facts: list[tuple[str, str]]
    lines: list[tuple[str, str]]
    total: str
    status: str
    footer: str


def contents(view: queries.InvoiceView) -> Contents:
    invoice, code = view.invoice, view.invoice.currency
    name, address, tax_id = legal_details()
    seller = [name[:60], *(line[:90] for line in address[:4])] + ([f"Tax ID: {tax_id[:60]}"] if tax_id else [])
    facts = [("Billed to", f"{view.customer.full_name} ({view.customer.email})"),
             ("Issued", f"{invoice.created_at:%d %b %Y}"),
             ("Due", f"{invoice.due_at:%d %b %Y}"),
             ("Period", f"{invoice.period_start:%d %b %Y} to {invoice.period_end:%d %b %Y} (UTC)")]
    if invoice.paid_at is not None:
        facts.append(("Paid", f"{invoice.paid_at:%d %b %Y}, from the wallet"))
    lines = [(line.description[:110], format_amount(line.amount, code, exact=True)) for line in view.lines]
    return Contents(title=f"Invoice {invoice.number}", seller=seller, facts=facts, lines=lines,
                    total=format_amount(invoice.total, code, exact=True), status=invoice.status.label,
                    footer=f"{name[:60]} - invoice {invoice.number}. Amounts in {code}.")


def render(view: queries.InvoiceView) -> bytes:
    doc = contents(view)
    buffer = io.BytesIO()
    width, height = A4
    c = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    c.setTitle(doc.title)
    c.setAuthor(doc.seller[0])
    regular, bold = _font("regular"), _font("bold")
    margin = 20 * mm
    y = height - margin
    c.setFillColor(ACCENT)
    c.setFont(bold, 18)
    c.drawString(margin, y, doc.seller[0])
    c.setFillColor(MUTED)
    c.setFont(regular, 9)
    for line in doc.seller[1:]:
        y -= 5 * mm
        c.drawString(margin, y, line)
    c.setFillColor(INK)
    c.setFont(bold, 14)
    c.drawRightString(width - margin, height - margin, doc.title)
    c.setFont(regular, 10)
    c.drawRightString(width - margin, height - margin - 6 * mm, f"Status: {doc.status}")
    y -= 12 * mm
    for label, value in doc.facts:
        c.setFillColor(MUTED)
        c.drawString(margin, y, label)
        c.setFillColor(INK)
        c.drawString(margin + 30 * mm, y, value[:95])
        y -= 6 * mm
    y -= 6 * mm
    c.setFont(bold, 10)
    c.drawString(margin, y, "Description")
    c.drawRightString(width - margin, y, "Amount")
    y -= 2 * mm
    c.setStrokeColor(MUTED)
    c.line(margin, y, width - margin, y)
    y -= 6 * mm
    c.setFont(regular, 9)
    for description, amount in doc.lines:
        c.drawString(margin, y, description)
        c.drawRightString(width - margin, y, amount)
        y -= 6 * mm
    c.line(margin, y + 3 * mm, width - margin, y + 3 * mm)
    y -= 2 * mm
    c.setFont(bold, 11)
    c.drawString(margin, y, "Total")
    c.drawRightString(width - margin, y, doc.total)
    c.setFillColor(MUTED)
    c.setFont(regular, 8)
    c.drawString(margin, margin, doc.footer)
    c.showPage()
    c.save()
    return buffer.getvalue()
