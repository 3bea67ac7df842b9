"""A payment's receipt as a one-page A4 PDF, drawn from the same facts as the receipt page and
e-mail (``services.receipt_lines``), so the three never disagree."""

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

ACCENT = HexColor("#0f766e")
INK = HexColor("#1f2937")
MUTED = HexColor("#6b7280")
RULE = HexColor("#d1d5db")

#: Bitstream Vera ships with ReportLab and is embedded, so names beyond Latin-1 still print.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
_FONTS = {"regular": ("AzoraReceiptVera", "Vera.ttf"), "bold": ("AzoraReceiptVeraBold", "VeraBd.ttf")}


def _font(style: str) -> str:
    name, filename = _FONTS[style]
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / filename)))
    return name


def _wrapped(c: canvas.Canvas, text: str, font: str, size: float, width: float) -> list[str]:
    """``text`` cut into lines no wider than ``width`` (long words are cut too)."""
    lines, line = [], ""
    for word in text.split():
        while c.stringWidth(word, font, size) > width:
            cut = len(word)
            while cut > 1 and c.stringWidth(word[:cut], font, size) > width:
                cut -= 1
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}".strip()
        if c.stringWidth(candidate, font, size) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines or [""]


def receipt_pdf(lines: list[tuple[str, str]], *, payer: str, email: str, issuer: str = "Azora Portal") -> bytes:
    """The receipt: a header, who paid, then each (label, value) of ``lines`` as a row."""
    buffer = io.BytesIO()
    width, height = A4
    c = canvas.Canvas(buffer, pagesize=A4)
    c.setTitle("Payment receipt")
    c.setAuthor(issuer)
    regular, bold = _font("regular"), _font("bold")
    left, right = 25 * mm, width - 25 * mm

    c.setFillColor(ACCENT)
    c.rect(0, height - 12 * mm, width, 12 * mm, stroke=0, fill=1)
    y = height - 35 * mm
    c.setFillColor(INK)
    c.setFont(bold, 22)
    c.drawString(left, y, "Receipt")
    c.setFont(regular, 10)
    c.setFillColor(MUTED)
    c.drawRightString(right, y, issuer)
    y -= 14 * mm

    c.setFont(regular, 10)
    c.drawString(left, y, "Paid by")
    c.setFillColor(INK)
    c.setFont(bold, 11)
    c.drawString(left + 45 * mm, y, payer[:80])
    y -= 5 * mm
    c.setFont(regular, 10)
    c.drawString(left + 45 * mm, y, email[:120])
    y -= 10 * mm

    value_width = right - (left + 45 * mm)
    for label, value in lines:
        c.setStrokeColor(RULE)
        c.line(left, y + 4 * mm, right, y + 4 * mm)
        c.setFillColor(MUTED)
        c.setFont(regular, 10)
        c.drawString(left, y - 2 * mm, label)
        c.setFillColor(INK)
        font = bold if label == "Amount" else regular
        c.setFont(font, 11)
        for part in _wrapped(c, value, font, 11, value_width):
            c.drawString(left + 45 * mm, y - 2 * mm, part)
            y -= 5.5 * mm
        y -= 4 * mm
        if y < 40 * mm:
            break

    c.setFillColor(MUTED)
    c.setFont(regular, 9)
    c.drawString(left, 20 * mm, "Amounts are in the payment's currency. Keep this receipt for your records.")
    c.showPage()
    c.save()
    return buffer.getvalue()
