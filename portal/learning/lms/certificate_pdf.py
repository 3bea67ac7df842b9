"""A certificate as a one-page A4 landscape PDF with a QR code of its verification address.

It shows only what the public verification page shows. The QR code is drawn as vector squares
(no image library needed), so it stays sharp when printed.
"""

from __future__ import annotations

import io
from pathlib import Path

import reportlab
import segno
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from portal.learning.lms.certificates import ISSUER
from portal.learning.lms.models import Certificate

ACCENT = HexColor("#0f766e")
INK = HexColor("#1f2937")
MUTED = HexColor("#6b7280")
REVOKED = HexColor("#b91c1c")

#: Bitstream Vera ships with ReportLab: embedded, so names outside Latin-1's few
#: standard-font glyphs still print.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
_FONTS = {"regular": ("AzoraVera", "Vera.ttf"), "bold": ("AzoraVeraBold", "VeraBd.ttf"),
          "italic": ("AzoraVeraItalic", "VeraIt.ttf")}


def _font(style: str) -> str:
    name, filename = _FONTS[style]
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / filename)))
    return name


def qr_code(url: str) -> segno.QRCode:
    """The QR code of ``url`` (error correction M: survives a crease or a smudge)."""
    return segno.make_qr(url, error="m")


def _fit(c: canvas.Canvas, value: str, font: str, size: float, width: float, smallest: float = 12) -> float:
    """The largest font size up to ``size`` at which ``value`` fits in ``width``."""
    while size > smallest and c.stringWidth(value, font, size) > width:
        size -= 1
    return size


def _draw_qr(c: canvas.Canvas, code: segno.QRCode, x: float, y: float, side: float) -> None:
    matrix = [list(row) for row in code.matrix]
    modules = len(matrix)
    cell = side / modules
    c.setFillColor(INK)
    for row_index, row in enumerate(matrix):
        for col_index, dark in enumerate(row):
            if dark:
                c.rect(x + col_index * cell, y + side - (row_index + 1) * cell, cell, cell, stroke=0, fill=1)


def render_pdf(certificate: Certificate, verify_url: str) -> bytes:
    buffer = io.BytesIO()
    width, height = landscape(A4)
    c = canvas.Canvas(buffer, pagesize=(width, height), pageCompression=1)
    c.setTitle(f"Certificate: {certificate.course_title}")
    c.setAuthor(ISSUER)
    c.setSubject(f"Certificate {certificate.code}")
    regular, bold, italic = _font("regular"), _font("bold"), _font("italic")

    # Frame: a thick accent border and a thin inner rule.
    c.setStrokeColor(ACCENT)
    c.setLineWidth(6)
    c.rect(12 * mm, 12 * mm, width - 24 * mm, height - 24 * mm)
    c.setLineWidth(0.8)
    c.rect(17 * mm, 17 * mm, width - 34 * mm, height - 34 * mm)

    centre = width / 2
    text_width = width - 70 * mm
    c.setFillColor(ACCENT)
    c.setFont(bold, 13)
    c.drawCentredString(centre, height - 38 * mm, ISSUER.upper())
    c.setFillColor(INK)
    c.setFont(bold, 34)
    c.drawCentredString(centre, height - 56 * mm, "Certificate of Completion")

    c.setFillColor(MUTED)
    c.setFont(italic, 14)
    c.drawCentredString(centre, height - 76 * mm, "This certifies that")
    c.setFillColor(INK)
    size = _fit(c, certificate.holder_name, bold, 30, text_width)
    c.setFont(bold, size)
    c.drawCentredString(centre, height - 92 * mm, certificate.holder_name)
    c.setStrokeColor(ACCENT)
    c.setLineWidth(0.8)
    c.line(centre - 80 * mm, height - 96 * mm, centre + 80 * mm, height - 96 * mm)

    c.setFillColor(MUTED)
    c.setFont(italic, 14)
    c.drawCentredString(centre, height - 110 * mm, "has completed the course")
    c.setFillColor(ACCENT)
    size = _fit(c, certificate.course_title, bold, 22, text_width)
    c.setFont(bold, size)
    c.drawCentredString(centre, height - 123 * mm, certificate.course_title)

    # Bottom left: date, code, issuer. Bottom right: the QR code.
    left = 30 * mm
    c.setFillColor(INK)
    rows = [
        ("Issued", f"{certificate.issued_at.day} {certificate.issued_at:%B %Y}"),
        ("Certificate code", certificate.code),
        ("Issued by", ISSUER),
    ]
    y = 52 * mm
    for label, value in rows:
        c.setFont(regular, 9)
        c.setFillColor(MUTED)
        c.drawString(left, y + 4.5 * mm, label.upper())
        c.setFont(bold, 12)
        c.setFillColor(INK)
        c.drawString(left, y, value)
        y -= 12 * mm

    side = 34 * mm
    qr_x, qr_y = width - 30 * mm - side, 30 * mm
    _draw_qr(c, qr_code(verify_url), qr_x, qr_y, side)
    c.setFont(regular, 8)
    c.setFillColor(MUTED)
    c.drawRightString(width - 30 * mm, qr_y - 4 * mm, "Scan or visit to verify:")
    c.setFont(regular, 7)
    c.drawRightString(width - 30 * mm, qr_y - 8 * mm, verify_url)

    if certificate.revoked_at is not None:
        c.saveState()
        c.setFillColor(REVOKED)
        c.setFont(bold, 60)
        c.translate(centre, height / 2)
        c.rotate(20)
        c.setFillAlpha(0.25)
        c.drawCentredString(0, 0, "REVOKED")
        c.restoreState()

    c.showPage()
    c.save()
    return buffer.getvalue()
