"""The suspicious activity report (SAR) of a case: assembled from the case's facts, kept as JSON on
the case (``suspicious_activities.report``), and printed as an A4 PDF.

The report says who (the subject and their verification level), when (the period the activity
covers), what (every movement of the subject's in the period, with amounts and counterparties,
the ones that raised alerts marked), why (the rules that fired, with their details and scores)
and the officer's narrative. It is a snapshot: building it again replaces it, and the timeline
and the audit trail keep each version's reference and time.
"""

from __future__ import annotations

import io
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import reportlab
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance.aml.models import MonitoringAlert
from portal.compliance.cases.models import SuspiciousActivity
from portal.db import db
from portal.money.currency import format_amount, quantize
from portal.money.wallets.models import Phase, Transaction, TransactionType, Wallet

#: Days before the first alerted movement that the report's period starts: the longest window the
#: rules look back over by default (structuring's days), so the movements that led up to an
#: alert are in the report too.
LOOKBACK_DAYS = 3
#: At most this many movements are listed (the totals still count every one).
MAX_TRANSACTIONS = 500
FORMAT_VERSION = 1


def _kyc_level(user_id: uuid.UUID) -> int:
    from portal.compliance.kyc.queries import effective_level

    return effective_level(user_id)


def assemble(case: SuspiciousActivity, narrative: str, officer: User, now: datetime) -> dict:
    """The report as JSON-ready data (a few queries: subject, alerts, movements, totals)."""
    subject = db.session.get(User, case.user_id)
    # An alert on card activity has no ledger row (a declined authorization moved nothing): it
    # counts from when it was raised.
    at = func.coalesce(Transaction.created_at, MonitoringAlert.created_at)
    alert_rows = db.session.execute(
        select(MonitoringAlert, at)
        .outerjoin(Transaction, Transaction.id == MonitoringAlert.transaction_id)
        .where(MonitoringAlert.case_id == case.id)
        .order_by(at, MonitoringAlert.id)
    ).all()
    alerted = {alert.transaction_id for alert, _ in alert_rows if alert.transaction_id is not None}
    if alert_rows:
        start = alert_rows[0][1] - timedelta(days=LOOKBACK_DAYS)
        end = alert_rows[-1][1]
    else:
        start, end = case.detected_at - timedelta(days=LOOKBACK_DAYS), case.detected_at

    debit_user, credit_user = aliased(User), aliased(User)
    debit_wallet, credit_wallet = aliased(Wallet), aliased(Wallet)
    moves = db.session.execute(
        select(Transaction, debit_user.full_name, credit_user.full_name, debit_wallet.system_name,
               credit_wallet.system_name)
        .join(debit_wallet, debit_wallet.id == Transaction.debit_wallet_id)
        .join(credit_wallet, credit_wallet.id == Transaction.credit_wallet_id)
        .outerjoin(debit_user, debit_user.id == Transaction.debit_user_id)
        .outerjoin(credit_user, credit_user.id == Transaction.credit_user_id)
        .where(or_(Transaction.debit_user_id == case.user_id, Transaction.credit_user_id == case.user_id),
               Transaction.phase.in_([Phase.SINGLE, Phase.POST]),
               Transaction.type != TransactionType.FEE,
               or_(and_(Transaction.created_at >= start, Transaction.created_at <= end),
                   Transaction.id.in_(alerted)))
        .order_by(Transaction.created_at, Transaction.id)
        .limit(MAX_TRANSACTIONS + 1)
    ).all()
    truncated = len(moves) > MAX_TRANSACTIONS
    transactions = []
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"in": Decimal(0), "out": Decimal(0)})
    for tx, debit_name, credit_name, debit_system, credit_system in moves[:MAX_TRANSACTIONS]:
        out = tx.debit_user_id == case.user_id
        if out:
            counterparty = credit_name or (credit_system.label if credit_system else "")
        else:
            counterparty = debit_name or (debit_system.label if debit_system else "")
        totals[tx.currency]["out" if out else "in"] += tx.amount
        transactions.append({
            "id": str(tx.id), "at": tx.created_at.isoformat(), "type": tx.type.value,
            "direction": "out" if out else "in", "amount": str(quantize(tx.amount, tx.currency)),
            "currency": tx.currency,
            "amountDisplay": format_amount(tx.amount, tx.currency), "counterparty": counterparty,
            "counterpartyKind": "user" if (tx.credit_user_id if out else tx.debit_user_id) else "system",
            "description": tx.description, "alerted": tx.id in alerted,
        })

    rules: dict[str, dict] = {}
    for alert, _at in alert_rows:
        for fired in alert.rules or []:
            entry = rules.setdefault(fired.get("rule", "?"), {"rule": fired.get("rule", "?"),
                                                              "title": fired.get("title", fired.get("rule", "?")),
                                                              "times": 0, "highestScore": 0, "details": []})
            entry["times"] += 1
            entry["highestScore"] = max(entry["highestScore"], int(fired.get("score", 0)))
            if fired.get("detail") and len(entry["details"]) < 20:
                entry["details"].append(fired["detail"])

    return {
        "format": FORMAT_VERSION,
        "reference": f"SAR-{now:%Y%m%d}-{str(case.id)[:8].upper()}",
        "generatedAt": now.isoformat(),
        "generatedBy": {"id": str(officer.id), "name": officer.full_name, "email": officer.email},
        "case": {"id": str(case.id), "title": case.title, "status": case.status.value,
                 "severity": case.severity.value, "riskScore": case.risk_score,
                 "detectedAt": case.detected_at.isoformat(), "dueAt": case.due_at.isoformat()},
        "subject": {"id": str(subject.id), "name": subject.full_name, "email": subject.email,
                    "role": subject.role.value, "accountOpenedAt": subject.created_at.isoformat(),
                    "status": subject.status.value, "kycLevel": _kyc_level(subject.id)},
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "transactions": transactions,
        "transactionsTruncated": truncated,
        # Amounts at their currency's scale ("400.00" USD, not the column's 18 places), as the PDF.
        "totals": [{"currency": code, "in": str(quantize(v["in"], code)), "out": str(quantize(v["out"], code)),
                    "inDisplay": format_amount(v["in"], code), "outDisplay": format_amount(v["out"], code)}
                   for code, v in sorted(totals.items())],
        "alerts": [{"id": str(alert.id),
                    "transactionId": str(alert.transaction_id) if alert.transaction_id else None,
                    "cardTransactionId": str(alert.card_transaction_id) if alert.card_transaction_id else None,
                    "at": at.isoformat(), "riskScore": alert.risk_score, "rules": alert.rules}
                   for alert, at in alert_rows],
        "rulesFired": sorted(rules.values(), key=lambda r: (-r["highestScore"], r["title"])),
        "narrative": narrative,
    }


# -- PDF --------------------------------------------------------------------------------------------

INK = colors.HexColor("#1f2937")
MUTED = colors.HexColor("#6b7280")
ACCENT = colors.HexColor("#0f766e")
RULE_LINE = colors.HexColor("#d1d5db")
ALERT_FILL = colors.HexColor("#fef3c7")

_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
_FONTS = {"regular": ("SarVera", "Vera.ttf"), "bold": ("SarVeraBold", "VeraBd.ttf")}


def _font(style: str) -> str:
    name, filename = _FONTS[style]
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / filename)))
    return name


def _fonts() -> tuple[str, str]:
    """The regular and bold faces, registered as one family so ``<b>`` in a paragraph works."""
    regular, bold = _font("regular"), _font("bold")
    pdfmetrics.registerFontFamily(regular, normal=regular, bold=bold, italic=regular, boldItalic=bold)
    return regular, bold


def _esc(value) -> str:
    return (str(value if value is not None else "").replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _day(value: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y %H:%M UTC")
    except (TypeError, ValueError):
        return str(value or "")


def _short(value: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y %H:%M")
    except (TypeError, ValueError):
        return str(value or "")


def render_pdf(report: dict) -> bytes:
    """The report as an A4 PDF (text only, embedded fonts)."""
    regular, bold = _fonts()
    styles = {
        "title": ParagraphStyle("title", fontName=bold, fontSize=16, leading=20, textColor=INK),
        "h2": ParagraphStyle("h2", fontName=bold, fontSize=11.5, leading=15, textColor=ACCENT, spaceBefore=10,
                             spaceAfter=4),
        "body": ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=13, textColor=INK, alignment=TA_LEFT),
        "small": ParagraphStyle("small", fontName=regular, fontSize=8, leading=10, textColor=MUTED),
        "rule": ParagraphStyle("rule", fontName=regular, fontSize=9.5, leading=13, textColor=INK, spaceBefore=4),
        "detail": ParagraphStyle("detail", fontName=regular, fontSize=8, leading=10, textColor=MUTED, leftIndent=8),
        "cell": ParagraphStyle("cell", fontName=regular, fontSize=8, leading=10, textColor=INK),
        "cellb": ParagraphStyle("cellb", fontName=bold, fontSize=8, leading=10, textColor=INK),
    }
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=16 * mm, title=f"Suspicious activity report {report.get('reference', '')}",
                            author="Azora Portal compliance")
    p = lambda text, style="body": Paragraph(text, styles[style])  # noqa: E731
    story = [p("Suspicious activity report", "title"),
             p(f"Reference {_esc(report.get('reference'))} · generated {_esc(_day(report.get('generatedAt')))} "
               f"by {_esc(report.get('generatedBy', {}).get('name'))} · confidential", "small"),
             Spacer(1, 4 * mm)]

    def facts(rows: list[tuple[str, str]]) -> Table:
        table = Table([[p(_esc(k), "cellb"), p(_esc(v), "cell")] for k, v in rows], colWidths=[42 * mm, None])
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                                   ("TOPPADDING", (0, 0), (-1, -1), 2)]))
        return table

    subject, case, period = report.get("subject", {}), report.get("case", {}), report.get("period", {})
    story += [p("Subject", "h2"), facts([
        ("Name", subject.get("name")), ("E-mail", subject.get("email")), ("Account opened",
                                                                          _day(subject.get("accountOpenedAt"))),
        ("Verification level", f"KYC level {subject.get('kycLevel', 0)}"), ("Account status", subject.get("status")),
    ])]
    story += [p("Case", "h2"), facts([
        ("Title", case.get("title")), ("Severity", str(case.get("severity", "")).capitalize()),
        ("Risk score", f"{case.get('riskScore', 0)} / 100"), ("Detected", _day(case.get("detectedAt"))),
        ("Period covered", f"{_day(period.get('from'))} to {_day(period.get('to'))}"),
    ])]

    story.append(p("Rules fired", "h2"))
    if report.get("rulesFired"):
        for rule in report["rulesFired"]:
            times = rule.get("times", 1)
            story.append(p(f"<b>{_esc(rule.get('title'))}</b>: {times} alert{'s' if times != 1 else ''}, "
                           f"up to {rule.get('highestScore', 0)} points.", "rule"))
            for detail in rule.get("details", [])[:5]:
                story.append(p(f"· {_esc(detail)}", "detail"))
    else:
        story.append(p("No monitoring rule raised this case; it was opened by an officer or by screening."))

    story.append(p("Transactions", "h2"))
    txs = report.get("transactions", [])
    if txs:
        header = [p(h, "cellb") for h in ("Date (UTC)", "Direction", "Type", "Amount", "Counterparty")]
        data = [header] + [[p(_esc(_short(t.get("at"))), "cell"), p("Out" if t.get("direction") == "out" else "In", "cell"),
                            p(_esc(str(t.get("type", "")).capitalize()), "cell"),
                            p(_esc(t.get("amountDisplay")), "cell"), p(_esc(t.get("counterparty")), "cell")]
                           for t in txs]
        table = Table(data, colWidths=[32 * mm, 20 * mm, 22 * mm, 40 * mm, None], repeatRows=1)
        style = [("LINEBELOW", (0, 0), (-1, 0), 0.8, INK), ("LINEBELOW", (0, 1), (-1, -1), 0.3, RULE_LINE),
                 ("VALIGN", (0, 0), (-1, -1), "TOP")]
        style += [("BACKGROUND", (0, i), (-1, i), ALERT_FILL) for i, t in enumerate(txs, start=1) if t.get("alerted")]
        table.setStyle(TableStyle(style))
        story.append(table)
        story.append(p("Highlighted rows raised an alert."
                       + (f" Only the first {len(txs)} movements are listed." if report.get("transactionsTruncated")
                          else ""), "small"))
        for total in report.get("totals", []):
            story.append(p(f"{_esc(total.get('currency'))}: received {_esc(total.get('inDisplay'))}, "
                           f"sent {_esc(total.get('outDisplay'))}."))
    else:
        story.append(p("No ledger movement in the period."))

    story.append(p("Officer's narrative", "h2"))
    for paragraph in str(report.get("narrative", "")).split("\n"):
        if paragraph.strip():
            story.append(p(_esc(paragraph)))

    def footer(canvas, document):
        canvas.saveState()
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(MUTED)
        canvas.drawString(18 * mm, 10 * mm, f"{report.get('reference', '')} · Azora Portal compliance · confidential")
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"Page {document.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
