"""Demo identity verifications: every state an officer meets, with real (generated) document
images, so the queue and the review page have something to show and the demo student can
withdraw (level 2).

- ``student@``: levels 1 and 2 approved (withdrawals work);
- ``student1@``: level 1 approved, level 2 submitted with both sides of an ID card;
- ``student2@``: level 1 submitted;
- ``student3@``: level 1 with a revision requested;
- ``student4@``: levels 1 and 2 approved, level 3 approved once and awaiting a second officer;
- ``student5@``: nothing yet, and a structured series of transfers to ``student3@`` that the
  monitoring rules turned into a case for each of them (``seed_monitoring_case``).

Only students without any verification are touched, so running it again changes nothing.
"""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from portal.accounts.models import User
from portal.compliance.kyc import personal_data
from portal.compliance.kyc.documents import PDF, PNG, CheckedFile, make_document
from portal.compliance.kyc.models import KycDocumentKind, KycStatus, KycVerification
from portal.db import db
from portal.db.base import utcnow

_PEOPLE = {
    "student@azora.example": ("Naledi Khumalo", "1999-03-14", "ZA", "18 Loop Street\nCape Town 8001"),
    "student1@azora.example": ("Kwame Mensah", "2000-07-02", "GH", "7 Independence Avenue\nAccra GA-110"),
    "student2@azora.example": ("Amara Okafor", "2001-11-23", "NG", "22 Awolowo Road\nIkoyi, Lagos 101233"),
    "student3@azora.example": ("Juma Otieno", "1998-01-30", "KE", "Kenyatta Avenue"),
    "student4@azora.example": ("Fatima Diallo", "1997-09-09", "SN", "5 Rue Carnot\nDakar 10200"),
}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def card_png(seed: int, *, back: bool = False, width: int = 428, height: int = 270) -> bytes:
    """A drawn identity card (colour bands, a photo box, lines standing for text) as a PNG."""
    base = [(222, 236, 247), (236, 230, 246), (230, 244, 233)][seed % 3]
    band = [(27, 94, 160), (94, 53, 177), (46, 125, 50)][seed % 3]
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            colour = base
            if y < 42:
                colour = band
            elif back and 180 < y < 230:
                colour = (40, 40, 40) if (x // 3 + y // 3 + seed) % 2 else (250, 250, 250)  # a code strip
            elif not back and 60 <= y <= 220 and 24 <= x <= 144:
                colour = (170, 180, 190) if not (90 < y < 150 and 50 < x < 118) else (120, 130, 140)
            elif y >= 64 and (y - 64) % 28 < 9 and 168 <= x <= 168 + 220 - ((y - 64) // 28) * 30:
                colour = (90, 98, 110)
            row += bytes(colour)
        rows.append(bytes(row))
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
            + _chunk(b"IEND", b""))


def bill_pdf(name: str, address: str) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    page.setFont("Helvetica-Bold", 16)
    page.drawString(72, 770, "City Water & Power: statement")
    page.setFont("Helvetica", 11)
    for i, line in enumerate([name, *address.splitlines(), "", f"Issued {date.today():%d %B %Y}",
                              "Amount due: 412.50"]):
        page.drawString(72, 730 - 16 * i, line)
    page.showPage()
    page.save()
    return out.getvalue()


def _file(name: str, data: bytes, content_type: str) -> CheckedFile:
    import hashlib

    return CheckedFile(name, content_type, data, hashlib.sha256(data).hexdigest())


def _row(user: User, level: int, status: KycStatus, data: dict, *, days_ago: int, country: str | None = None,
         document_type: str | None = None, expires: date | None = None, decider: User | None = None,
         first: User | None = None, reason: str = "", person: tuple[str, str] | None = None) -> KycVerification:
    now = utcnow()
    verification_id = uuid.uuid4()
    decided = status not in (KycStatus.SUBMITTED, KycStatus.AWAITING_SECOND)
    row = KycVerification(id=verification_id, user_id=user.id, level=level, status=status,
                          data_encrypted=personal_data.seal(verification_id, user.id, data), country=country,
                          document_type=document_type, document_expires_on=expires,
                          submitted_at=now - timedelta(days=days_ago),
                          first_approver_id=first.id if first else None,
                          decided_by_id=decider.id if decided and decider else None,
                          decided_at=now - timedelta(days=days_ago - 1) if decided else None,
                          decision_reason=reason)
    db.session.add(row)
    db.session.flush()
    if not decided:
        from portal.compliance.aml import screening

        name, born = person or (user.full_name, None)
        screening.screen_user(user.id, name, date.fromisoformat(born) if born else None, country,
                              trigger="kyc_submission", verification_id=verification_id)
    return row


def seed_kyc(officers: list[User], students: list[User]) -> int:
    """Verifications for the demo students who have none; returns how many were made. Needs two
    officers (level 3 takes two)."""
    first, second = officers[0], officers[-1]
    by_email = {student.email: student for student in students}
    taken = set(db.session.scalars(select(KycVerification.user_id).where(
        KycVerification.user_id.in_([s.id for s in students]))))
    made = 0
    approved = KycStatus.APPROVED
    for index, (email, (name, born, country, address)) in enumerate(_PEOPLE.items()):
        student = by_email.get(email)
        if student is None or student.id in taken:
            continue
        personal = {"legal_name": name, "birth_date": born, "address": address}
        status1 = {2: KycStatus.SUBMITTED, 3: KycStatus.REVISION_REQUESTED}.get(index, approved)
        reason = "Add the building number and the postal code to the address." if index == 3 else ""
        _row(student, 1, status1, personal, days_ago=12 - index, country=country, decider=first, reason=reason,
             person=(name, born))
        made += 1
        if index in (0, 1, 4):
            status2 = KycStatus.SUBMITTED if index == 1 else approved
            level2 = _row(student, 2, status2, {"document_number": f"A{7_300_000 + index * 1331}"},
                          days_ago=6 - index, document_type="national_id" if index == 1 else "passport",
                          expires=date.today() + timedelta(days=900 + index * 200), decider=second,
                          person=(name, born))
            db.session.add(make_document(_file("id-front.png", card_png(index), PNG), KycDocumentKind.ID_FRONT,
                                         level2.id, student.id))
            if index == 1:
                db.session.add(make_document(_file("id-back.png", card_png(index, back=True), PNG),
                                             KycDocumentKind.ID_BACK, level2.id, student.id))
            made += 1
        if index == 4:
            level3 = _row(student, 3, KycStatus.AWAITING_SECOND, {}, days_ago=1, country=country, first=first,
                          person=(name, born))
            db.session.add(make_document(_file("statement.pdf", bill_pdf(name, address), PDF),
                                         KycDocumentKind.PROOF_OF_ADDRESS, level3.id, student.id))
            db.session.add(make_document(_file("selfie.png", card_png(5, width=240, height=300), PNG),
                                         KycDocumentKind.SELFIE, level3.id, student.id))
            made += 1
        db.session.flush()
    return made


# ---------------------------------------------------------------- a case for the case manager

#: A deposit, then three transfers each just under the large amount (USD 10,000 by default):
#: structuring, velocity, a new account moving high value. Amounts in USD.
_STRUCTURED_DEPOSIT = Decimal("30000")
_STRUCTURED_TRANSFERS = (Decimal("9500"), Decimal("9700"), Decimal("9800"))
_STRUCTURED_MARK = "structuring"


def seed_monitoring_case(sender: User, recipient: User) -> int:
    """A structured series of transfers from ``sender`` to ``recipient``, judged by the monitoring
    rules at once, so the officers' case queue and dashboard have a real case to work (each side
    gets its alerts and its case). Returns the alerts made; nothing when the series exists."""
    from portal.compliance.aml import monitoring
    from portal.money.demo import DEMO_MARK
    from portal.money.wallets import fees, ledger
    from portal.money.wallets.models import SystemWallet, Transaction, TransactionType

    done = db.session.scalar(select(func.count()).select_from(Transaction)
                             .where(Transaction.details[DEMO_MARK].astext == _STRUCTURED_MARK,
                                    Transaction.credit_user_id == sender.id))
    if done:
        return 0
    code = "USD"
    own, theirs = ledger.open_user_wallet(sender.id, code), ledger.open_user_wallet(recipient.id, code)
    mark = {DEMO_MARK: _STRUCTURED_MARK}
    posted = ledger.post([ledger.Leg(ledger.system_wallet(SystemWallet.DEPOSITS, code), own, _STRUCTURED_DEPOSIT,
                                     TransactionType.DEPOSIT, "Deposit",
                                     {"from_name": "Deposit", "note": "Bank transfer in", **mark})])
    ids = [tx.id for tx in posted]
    for amount in _STRUCTURED_TRANSFERS:
        details = {"from_name": sender.full_name, "to_name": recipient.full_name, "note": "Invoice", **mark}
        legs = [ledger.Leg(own, theirs, amount, TransactionType.TRANSFER, f"Transfer to {recipient.full_name}",
                           details)]
        fee = fees.fee_for(TransactionType.TRANSFER, amount, code)
        if fee > 0:
            legs.append(ledger.Leg(own, ledger.system_wallet(SystemWallet.FEES, code, spread_by=sender.id), fee,
                                   TransactionType.FEE, "Transfer fee",
                                   {"to_name": "Azora fees", "note": f"Fee for the transfer to {recipient.full_name}",
                                    **mark}))
        ids += [tx.id for tx in ledger.post(legs, initiated_by_id=sender.id)]
    return len(monitoring.monitor(ids))
