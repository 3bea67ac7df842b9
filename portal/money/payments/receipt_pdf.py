"""A payment's receipt as a one-page A4 PDF (ReportLab): who paid, for what, how much, how, the
provider's reference, and any refunds. The same facts as the receipt e-mail
(``services.receipt_lines``). Only a succeeded payment has a receipt."""

from __future__ import annotations

import io
from pathlib import Path

import reportlab
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.errors import Conflict
from portal.money.currency import format_amount
from portal.money.payments import services
from portal.money.payments.models import Payment, Refund, RefundState
from portal.money.payments.providers.base import PaymentState

ISSUER = "Azora Portal"
ACCENT = HexColor("#0f766e")
INK = HexColor("#1f2937")
MUTED = HexColor("#6b7280")

#: Bitstream Vera ships with ReportLab: embedded, so any payer's name prints.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
_FONTS = {"regular": ("AzoraVera", "Vera.ttf"), "bold": ("AzoraVeraBold", "VeraBd.ttf")}


def _font(style: str) -> str:
    name, filename = _FONTS[style]
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / filename)))
    return name


def receipt_pdf(viewer: User, payment: Payment) -> bytes:
    """The receipt of ``payment`` as PDF bytes, for its payer (or finance). Raises ``NotFound``
    for someone else's payment and ``Conflict`` for one that has not succeeded."""
    payment = services.own_payment(viewer, payment.id)
    if payment.state != PaymentState.SUCCEEDED:
        raise Conflict("A receipt exists only for a payment that succeeded.")
    payer = db.session.get(User, payment.user_id)
    course = services._course(payment.course_id) if payment.course_id else None
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id,
                                                           Refund.state == RefundState.SUCCEEDED)
                                      .order_by(Refund.created_at)))
    return render(payer, payment, services.receipt_lines(payment, course), refunds)


def render(payer: User, payment: Payment, lines: list[tuple[str, str]], refunds: list[Refund]) -> bytes:
    buffer = io.BytesIO()
    width, height = A4
    c = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    c.setTitle(f"Receipt {payment.id}")
    c.setAuthor(ISSUER)
    regular, bold = _font("regular"), _font("bold")
    margin = 20 * mm
    y = height - margin
    c.setFillColor(ACCENT)
    c.setFont(bold, 20)
    c.drawString(margin, y, ISSUER)
    c.setFillColor(INK)
    c.setFont(bold, 14)
    y -= 14 * mm
    c.drawString(margin, y, "Receipt")
    c.setFont(regular, 11)
    y -= 8 * mm
    c.drawString(margin, y, f"Paid by {payer.full_name} ({payer.email})")
    y -= 10 * mm
    for label, value in lines:
        c.setFillColor(MUTED)
        c.setFont(regular, 10)
        c.drawString(margin, y, label)
        c.setFillColor(INK)
        c.setFont(regular, 11)
        c.drawString(margin + 50 * mm, y, value[:90])
        y -= 7 * mm
    if refunds:
        y -= 4 * mm
        c.setFont(bold, 11)
        c.drawString(margin, y, "Refunds")
        y -= 7 * mm
        c.setFont(regular, 10)
        for refund in refunds:
            when = (refund.settled_at or refund.created_at).strftime("%Y-%m-%d")
            c.drawString(margin, y, f"{when}  {format_amount(refund.amount, refund.currency, exact=True)}"
                         f"  {refund.reason[:70]}")
            y -= 6 * mm
    c.setFillColor(MUTED)
    c.setFont(regular, 8)
    c.drawString(margin, margin, f"{ISSUER} - receipt {payment.id}. Keep it for your records.")
    c.showPage()
    c.save()
    return buffer.getvalue()
