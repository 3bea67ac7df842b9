"""An invoice as a one-page A4 PDF (ReportLab): the seller's legal details from configuration
(``BILLING_LEGAL_NAME``, ``BILLING_LEGAL_ADDRESS``, ``BILLING_TAX_ID``), the customer, the
number, dates and status, every line with its amount and the total."""

from __future__ import annotations

import io
import uuid
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


def render(view: queries.InvoiceView) -> bytes:
    invoice, code = view.invoice, view.invoice.currency
    seller, address, tax_id = legal_details()
    buffer = io.BytesIO()
    width, height = A4
    c = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    c.setTitle(f"Invoice {invoice.number}")
    c.setAuthor(seller)
    regular, bold = _font("regular"), _font("bold")
    margin = 20 * mm
    y = height - margin
    c.setFillColor(ACCENT)
    c.setFont(bold, 18)
    c.drawString(margin, y, seller[:60])
    c.setFillColor(MUTED)
    c.setFont(regular, 9)
    for line in address[:4]:
        y -= 5 * mm
        c.drawString(margin, y, line[:90])
    if tax_id:
        y -= 5 * mm
        c.drawString(margin, y, f"Tax ID: {tax_id[:60]}")
    c.setFillColor(INK)
    c.setFont(bold, 14)
    c.drawRightString(width - margin, height - margin, f"Invoice {invoice.number}")
    c.setFont(regular, 10)
    c.drawRightString(width - margin, height - margin - 6 * mm, f"Status: {invoice.status.label}")
    y -= 12 * mm
    facts = [("Billed to", f"{view.customer.full_name} ({view.customer.email})"),
             ("Issued", f"{invoice.created_at:%d %b %Y}"),
             ("Due", f"{invoice.due_at:%d %b %Y}"),
             ("Period", f"{invoice.period_start:%d %b %Y} to {invoice.period_end:%d %b %Y} (UTC)")]
    if invoice.paid_at is not None:
        facts.append(("Paid", f"{invoice.paid_at:%d %b %Y}, from the wallet"))
    for label, value in facts:
        c.setFillColor(MUTED)
        c.setFont(regular, 10)
        c.drawString(margin, y, label)
        c.setFillColor(INK)
        c.setFont(regular, 10)
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
    for line in view.lines:
        c.drawString(margin, y, line.description[:110])
        c.drawRightString(width - margin, y, format_amount(line.amount, code, exact=True))
        y -= 6 * mm
    c.line(margin, y + 3 * mm, width - margin, y + 3 * mm)
    y -= 2 * mm
    c.setFont(bold, 11)
    c.drawString(margin, y, "Total")
    c.drawRightString(width - margin, y, format_amount(invoice.total, code, exact=True))
    c.setFillColor(MUTED)
    c.setFont(regular, 8)
    c.drawString(margin, margin, f"{seller[:60]} - invoice {invoice.number}. Amounts in {code}.")
    c.showPage()
    c.save()
    return buffer.getvalue()
