"""Cases for the case tests: opened the way monitoring opens them, on real ledger activity."""

from __future__ import annotations

from portal.accounts.models import User
from portal.compliance.kyc import monitoring
from portal.compliance.kyc.models import SuspiciousActivity
from portal.db import db
from tests.compliance.monitoring_helpers import fund, old_student, transfer


def structured_case(subject: User | None = None, *, recipient: User | None = None) -> SuspiciousActivity:
    """Three transfers just under the USD large amount by ``subject``; the monitoring rules open a
    case on the third (structuring and the window's large sum)."""
    subject = subject or old_student()
    recipient = recipient or old_student()
    fund(subject, "40000")
    txs = [transfer(subject, recipient, amount) for amount in ("9500", "9700", "9900")]
    db.session.flush()
    alerts = monitoring.monitor([tx.id for tx in txs])
    assert alerts, "the structured series raised no alert"
    return db.session.get(SuspiciousActivity, alerts[-1].case_id)
