"""Cases for the case tests: opened the way monitoring opens them, on real ledger activity."""

from __future__ import annotations

from portal.accounts.models import User
from portal.compliance.aml import monitoring
from portal.compliance.cases.models import SuspiciousActivity
from portal.db import db
from tests.compliance.monitoring_helpers import fund, old_student, transfer


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
