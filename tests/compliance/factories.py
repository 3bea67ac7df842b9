"""Rows for the compliance tests: approved verifications made directly, real small files of each
accepted type, students whose accounts are old, and cases opened the way monitoring opens them."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from datetime import date, timedelta

from portal.accounts.models import User
from portal.compliance.aml import monitoring
from portal.compliance.cases.models import SuspiciousActivity
from portal.compliance.kyc import personal_data
from portal.compliance.kyc.models import KycStatus, KycVerification
from portal.db import db
from portal.db.base import utcnow
from tests.compliance.helpers import transfer
from tests.factories import create_user
from tests.money.factories import fund


def verify(user: User, level: int, *, expires_on: date | None = None, country: str = "ZA",
           legal_name: str | None = None) -> list[KycVerification]:
    """Approve ``user`` at every level up to ``level`` (made directly, as if two officers had
    decided). ``expires_on`` is the level-2 document's expiry (default: in five years). Level 3
    takes two officers (four eyes), made here; lower levels leave the decider empty, so a test
    that commits and later deletes the student leaves nothing behind."""
    first, second = (create_user("compliance"), create_user("compliance")) if level >= 3 else (None, None)
    now = utcnow()
    rows = []
    for number in range(1, level + 1):
        verification_id = uuid.uuid4()
        data = {1: {"legal_name": legal_name or user.full_name, "birth_date": "1999-04-01",
                    "address": "12 Long Street, Cape Town 8001"},
                2: {"document_number": "A1234567"}, 3: {}}[number]
        row = KycVerification(
            id=verification_id, user_id=user.id, level=number, status=KycStatus.APPROVED,
            data_encrypted=personal_data.seal(verification_id, user.id, data),
            country=country if number != 2 else None,
            document_type="passport" if number == 2 else None,
            document_expires_on=(expires_on or date.today() + timedelta(days=5 * 365)) if number == 2 else None,
            submitted_at=now - timedelta(days=10 - number), first_approver_id=first.id if number == 3 else None,
            decided_by_id=second.id if number == 3 else None, decided_at=now - timedelta(days=9 - number), decision_reason="")
        db.session.add(row)
        rows.append(row)
    db.session.flush()
    return rows


def verified_user_factory(level: int):
    """``create_user`` whose active students come verified at ``level`` (for tests of features
    that need it, such as withdrawals at level 2)."""

    def make(role: str = "student", **fields) -> User:
        user = create_user(role, **fields)
        if user.role.value == "student" and user.status.value == "active":
            verify(user, level)
        return user

    return make


# ---------------------------------------------------------------------------------- files


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    """A real, decodable RGB PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(row * height))
            + _chunk(b"IEND", b""))


def jpeg_bytes(payload: bytes = b"\x12\x34\x56\x78" * 16) -> bytes:
    """A JPEG with the segment structure the checker reads: SOI, JFIF APP0, a quantisation
    table, a baseline frame header, start of scan with entropy-coded bytes, EOI."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\x00" + bytes(range(1, 65))
    sof = struct.pack(">BHHB", 8, 1, 1, 1) + b"\x01\x11\x00"
    sos = b"\x01\x01\x00\x00\x3f\x00"

    def segment(marker: int, body: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body

    return (b"\xff\xd8" + segment(0xE0, app0) + segment(0xDB, dqt) + segment(0xC0, sof) + segment(0xDA, sos)
            + payload + b"\xff\xd9")


def pdf_bytes(text: str = "Utility bill") -> bytes:
    """A real one-page PDF (ReportLab)."""
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out)
    page.drawString(72, 720, text)
    page.showPage()
    page.save()
    return out.getvalue()


def old_student(**fields) -> User:
    """A student whose account is a year old (the new-account rule leaves it alone)."""
    return create_user("student", created_at=utcnow() - timedelta(days=365), **fields)


def structured_case(subject: User | None = None, *, recipient: User | None = None) -> SuspiciousActivity:
    """Three transfers just under the USD large amount by ``subject``; the monitoring rules open a
    case on the third (structuring and the window's large sum) and return it.

    Without ``recipient`` each transfer goes to a different student, whose one movement trips
    nothing, so the subject's is the only case. With ``recipient`` all three go to them: their
    side trips the rules too (incoming structuring) and they get a case of their own."""
    subject = subject or old_student()
    recipients = [recipient] * 3 if recipient is not None else [old_student() for _ in range(3)]
    fund(subject, "40000")
    txs = [transfer(subject, to, amount) for to, amount in zip(recipients, ("9500", "9700", "9900"), strict=True)]
    db.session.flush()
    alerts = [alert for alert in monitoring.monitor([tx.id for tx in txs]) if alert.user_id == subject.id]
    assert alerts, "the structured series raised no alert"
    return db.session.get(SuspiciousActivity, alerts[-1].case_id)
