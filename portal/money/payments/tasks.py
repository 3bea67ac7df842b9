"""Jobs of the payment gateway: asking providers about what is uncertain.

Every few minutes the worker takes the payments still open and unchanged for longer than
``PAYMENT_STUCK_MINUTES`` (or that never reached their provider) and the pending refunds, asks
each provider for its record and applies it through the one place that applies providers' views
(``services.resume_payment`` / ``resume_refund``). It is idempotent: a payment credited already
is not credited again, a settled refund not settled again; each item runs in its own savepoint,
so one provider's failure does not stop the others, and the job catches up after downtime.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from portal.platform.jobs import periodic

log = logging.getLogger(__name__)

#: Items asked about per run (the rest wait for the next run, oldest first).
BATCH = 200
#: A payment the payer left on the hosted page (never paid) is canceled at the provider after this.
ABANDONED_AFTER = timedelta(hours=24)


@periodic(cron="*/5 * * * *", queue="money")
def poll_stuck_payments(timestamp: int) -> dict:  # noqa: ARG001 - procrastinate passes the schedule time
    """Apply what providers say about stuck payments and pending refunds; returns the counts."""
    return sweep()


def sweep(limit: int = BATCH) -> dict:
    """One pass of the job (also callable from a command or a test)."""
    from portal.db import db
    from portal.db.base import utcnow
    from portal.errors import DomainError
    from portal.money.payments import queries, services
    from portal.money.payments.models import RefundState
    from portal.money.payments.providers.base import PaymentState, ProviderError

    counts = {"payments": 0, "payments_changed": 0, "refunds": 0, "refunds_settled": 0, "errors": 0}
    abandoned_before = utcnow() - ABANDONED_AFTER
    for payment in queries.stuck_payments(limit):
        before = payment.state
        counts["payments"] += 1
        try:
            with db.session.begin_nested():
                services.resume_payment(None, payment, source=services.EventSource.POLL)
                if (payment.state in (PaymentState.REQUIRES_PAYMENT_METHOD, PaymentState.REQUIRES_ACTION)
                        and payment.provider_ref and payment.created_at < abandoned_before):
                    services.cancel_abandoned(payment)
        except (ProviderError, DomainError) as exc:
            counts["errors"] += 1
            log.warning("payment %s: the provider could not be asked: %s", payment.id, exc)
            continue
        counts["payments_changed"] += payment.state != before
    for refund in queries.pending_refunds(limit):
        counts["refunds"] += 1
        try:
            with db.session.begin_nested():
                services.resume_refund(refund)
        except (ProviderError, DomainError) as exc:
            counts["errors"] += 1
            log.warning("refund %s: the provider could not be asked: %s", refund.id, exc)
            continue
        counts["refunds_settled"] += refund.state != RefundState.PENDING
    return counts


@periodic(cron="45 3 * * *", queue="money")
def reconcile_nightly(timestamp: int) -> int:  # noqa: ARG001 - procrastinate passes the schedule time
    """Reconcile the last two days' payments with their providers and the ledger (applying what
    the providers say first) and record the result; returns the number of differences."""
    from portal.money.payments.reconcile import reconcile_and_record

    report = reconcile_and_record("the nightly job", days=2, fix=True)
    if not report.ok:
        log.error("payment reconciliation found %d difference(s), e.g. %s", len(report.differences),
                  report.differences[0].message)
    return len(report.differences)
