"""Reconciliation: every payment and refund compared with the provider's record and with the
ledger, and every difference listed.

For each payment (of the last ``days``, or all):

- **Provider**: the provider's record is fetched; its state, amount, currency and refunded
  amount must match the portal's (a portal state still open while the provider's has ended is
  a difference too: the job should have applied it). A payment the provider never received
  (``needsReconcile``) and a provider that cannot be asked are listed.
- **Ledger**: the rows that name the payment (``details.payment_id``) must say the same: a
  succeeded payment from a provider is credited exactly once with its amount (one ``top_up``
  leg), its fee booked once as a ``fee`` leg equal to the payment's fee, a course bought with
  one ``purchase`` leg; nothing at all for a payment that did not succeed.

For each refund: a succeeded one has its holds captured, a failed or canceled one released, a
pending one still held; the provider's record agrees on the state and amount; a payment's
succeeded refunds add up to its ``amountRefunded``.

``fix=True`` also applies what the provider says (``services.resume_payment`` / ``resume_refund``,
idempotent) before comparing, as the periodic job does.

``reconcile_and_record`` keeps each run's result as a ``payments.reconciliation`` metric (value:
the number of differences, the first ``RECORDED_DIFFERENCES`` of them in its labels), which the
reconciliation page shows (``last_reconciliation``); the nightly job and the command record it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from portal.db import db
from portal.db.base import utcnow
from portal.money.payments import services
from portal.money.payments import states as st
from portal.money.payments.models import Payment, Purpose, Refund, RefundState
from portal.money.payments.providers.base import PaymentState, ProviderError, ProviderUnavailable
from portal.money.wallets import ledger
from portal.money.wallets.models import Phase, Transaction, TransactionType


@dataclass(frozen=True)
class Difference:
    """One thing that does not match."""

    kind: str  #: ``provider``, ``ledger``, ``refund``, ``unreachable``
    payment_id: uuid.UUID
    message: str
    refund_id: uuid.UUID | None = None


@dataclass
class Report:
    payments: int = 0
    refunds: int = 0
    fixed: int = 0
    differences: list[Difference] = field(default_factory=list)
    checked_at: object = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def add(self, kind: str, payment: Payment, message: str, refund: Refund | None = None) -> None:
        self.differences.append(Difference(kind, payment.id, message, refund.id if refund is not None else None))


def _ledger_by_payment(ids: list[uuid.UUID]) -> dict[str, dict]:
    """``{payment id: {(type, phase): (count, sum)}}`` for the ledger rows naming these payments."""
    if not ids:
        return {}
    key = Transaction.details["payment_id"].astext
    with ledger.as_ledger():
        rows = db.session.execute(
            select(key.label("payment_id"), Transaction.type, Transaction.phase, func.count(), func.sum(Transaction.amount))
            .where(key.in_([str(i) for i in ids]))
            .group_by(key, Transaction.type, Transaction.phase)).all()
    found: dict[str, dict] = defaultdict(dict)
    for payment_id, kind, phase, count, total in rows:
        found[payment_id][(TransactionType(kind), Phase(phase))] = (count, Decimal(total))
    return found


def _hold_resolutions(hold_ids: list[uuid.UUID]) -> dict[uuid.UUID, Phase]:
    """How each hold ended (``post`` or ``void``); absent: still open."""
    if not hold_ids:
        return {}
    with ledger.as_ledger():
        rows = db.session.execute(select(Transaction.pending_id, Transaction.phase)
                                  .where(Transaction.pending_id.in_(hold_ids))).all()
    return {pending_id: Phase(phase) for pending_id, phase in rows}


def reconcile(*, days: int | None = None, fix: bool = False, provider_calls: bool = True,
              user_id: uuid.UUID | None = None) -> Report:
    """Compare payments and refunds (of the last ``days``, or all; of one payer, or all) with
    their providers and the ledger; returns every difference. ``fix`` first applies what the
    providers say."""
    report = Report(checked_at=utcnow())
    query = select(Payment).order_by(Payment.created_at, Payment.id)
    if user_id is not None:
        query = query.where(Payment.user_id == user_id)
    if days is not None:
        query = query.where(Payment.created_at >= utcnow() - timedelta(days=days))
    payments = list(db.session.scalars(query))
    if fix:
        report.fixed = _fix(payments)
        payments = list(db.session.scalars(query.execution_options(populate_existing=True)))
    refunds_of: dict[uuid.UUID, list[Refund]] = defaultdict(list)
    ids = [p.id for p in payments]
    for refund in db.session.scalars(select(Refund).where(Refund.payment_id.in_(ids)) if ids else select(Refund).where(False)):
        refunds_of[refund.payment_id].append(refund)
    moved = _ledger_by_payment(ids)
    resolutions = _hold_resolutions([h for rs in refunds_of.values() for r in rs for h in r.hold_transaction_ids])
    report.payments = len(payments)
    for payment in payments:
        refunds = refunds_of.get(payment.id, [])
        report.refunds += len(refunds)
        _check_ledger(report, payment, moved.get(str(payment.id), {}))
        _check_refunds(report, payment, refunds, resolutions)
        if provider_calls and payment.provider != "wallet":
            _check_provider(report, payment, refunds)
    return report


def _fix(payments: list[Payment]) -> int:
    fixed = 0
    for payment in payments:
        if payment.provider == "wallet":
            continue
        if payment.state in st.OPEN_PAYMENT_STATES:
            before = payment.state
            try:
                with db.session.begin_nested():
                    services.resume_payment(None, payment)
            except ProviderError:
                continue
            fixed += payment.state != before
        for refund in db.session.scalars(select(Refund).where(Refund.payment_id == payment.id,
                                                              Refund.state == RefundState.PENDING)):
            try:
                with db.session.begin_nested():
                    services.resume_refund(refund)
            except ProviderError:
                continue
            fixed += refund.state != RefundState.PENDING
    return fixed


def _check_ledger(report: Report, payment: Payment, moved: dict) -> None:
    def rows(kind: TransactionType, phase: Phase = Phase.SINGLE) -> tuple[int, Decimal]:
        return moved.get((kind, phase), (0, Decimal(0)))

    top_ups, credited = rows(TransactionType.TOP_UP)
    fees, fee_total = rows(TransactionType.FEE)
    purchases, bought = rows(TransactionType.PURCHASE)
    if payment.state != PaymentState.SUCCEEDED:
        if top_ups or fees or purchases:
            report.add("ledger", payment, f"The payment is {payment.state.value} but the ledger moved money for it "
                       f"({top_ups} top-up, {fees} fee, {purchases} purchase rows).")
        return
    if payment.provider != "wallet":
        if top_ups != 1 or credited != payment.amount:
            report.add("ledger", payment, f"Succeeded for {payment.amount} {payment.currency}, but the ledger "
                       f"credited {credited} in {top_ups} top-up rows (expected exactly one).")
        expected_fee = payment.fee or Decimal(0)
        if (fees, fee_total) != ((1, expected_fee) if expected_fee > 0 else (0, Decimal(0))):
            report.add("ledger", payment, f"The provider fee is {expected_fee}, the ledger booked {fee_total} in "
                       f"{fees} fee rows.")
    if payment.purpose == Purpose.COURSE_PURCHASE and (purchases != 1 or bought != payment.amount):
        report.add("ledger", payment, f"A course bought for {payment.amount}, but the ledger has {purchases} "
                   f"purchase rows for {bought}.")
    if payment.purpose == Purpose.TOP_UP and purchases:
        report.add("ledger", payment, "A top-up with purchase rows on the ledger.")


def _check_refunds(report: Report, payment: Payment, refunds: list[Refund], resolutions: dict) -> None:
    succeeded = sum((r.amount for r in refunds if r.state == RefundState.SUCCEEDED), Decimal(0))
    if succeeded != payment.amount_refunded:
        report.add("refund", payment, f"Succeeded refunds add up to {succeeded}, the payment says "
                   f"{payment.amount_refunded} refunded.")
    if succeeded > payment.amount:
        report.add("refund", payment, f"Refunded {succeeded}, more than the {payment.amount} captured.")
    for refund in refunds:
        if payment.provider == "wallet" or refund.state in (RefundState.REQUESTED, RefundState.REJECTED):
            continue
        if not refund.hold_transaction_ids:
            report.add("refund", payment, f"Refund {refund.id} ({refund.state.value}) held no funds.", refund)
            continue
        ends = {resolutions.get(h) for h in refund.hold_transaction_ids}
        expected = {RefundState.SUCCEEDED: {Phase.POST}, RefundState.PENDING: {None}}.get(refund.state, {Phase.VOID})
        if ends != expected:
            shown = ", ".join(sorted("open" if e is None else e.value for e in ends))
            report.add("refund", payment, f"Refund {refund.id} is {refund.state.value} but its hold is {shown}.",
                       refund)


def _check_provider(report: Report, payment: Payment, refunds: list[Refund]) -> None:
    if payment.provider_ref is None:
        if payment.state not in st.FINAL_PAYMENT_STATES:
            report.add("unreachable", payment, "The provider never received this payment (it did not answer); "
                       "the job will send it again.")
        return
    provider = services.get_provider(payment.provider)
    try:
        theirs = provider.fetch(payment.provider_ref)
    except ProviderUnavailable as exc:
        report.add("unreachable", payment, f"The provider could not be asked: {exc}")
        return
    except ProviderError as exc:
        report.add("provider", payment, f"The provider does not know this payment: {exc}")
        return
    if theirs.state != payment.state:
        report.add("provider", payment, f"The provider says {theirs.state.value}, the portal "
                   f"{payment.state.value}.")
    if theirs.amount != payment.amount or theirs.currency.upper() != payment.currency:
        report.add("provider", payment, f"The provider has {theirs.amount} {theirs.currency}, the portal "
                   f"{payment.amount} {payment.currency}.")
    if theirs.amount_refunded != payment.amount_refunded:
        report.add("provider", payment, f"The provider refunded {theirs.amount_refunded}, the portal "
                   f"{payment.amount_refunded}.")
    if theirs.fee is not None and payment.fee is not None and theirs.fee != payment.fee:
        report.add("provider", payment, f"The provider's fee is {theirs.fee}, the portal booked {payment.fee}.")
    for refund in refunds:
        if refund.provider_ref is None:
            if refund.state == RefundState.PENDING:
                report.add("unreachable", payment, f"Refund {refund.id} never reached the provider.", refund)
            continue
        try:
            their_refund = provider.fetch_refund(refund.provider_ref)
        except ProviderError as exc:
            report.add("unreachable", payment, f"The provider could not be asked about refund {refund.id}: {exc}",
                       refund)
            continue
        if their_refund.state.value != refund.state.value or their_refund.amount != refund.amount:
            report.add("refund", payment, f"Refund {refund.id}: the provider says {their_refund.state.value} "
                       f"{their_refund.amount}, the portal {refund.state.value} {refund.amount}.", refund)


RECONCILIATION_METRIC = "payments.reconciliation"
#: Differences kept with a recorded run (the page lists them; the command prints them all).
RECORDED_DIFFERENCES = 200


def reconcile_and_record(ran_by: str, **options) -> Report:
    """Reconcile and keep the result as a metric. The caller commits."""
    from portal.platform.analytics.models import Metric

    report = reconcile(**options)
    kept = [{"kind": d.kind, "payment_id": str(d.payment_id), "message": d.message[:500],
             "refund_id": str(d.refund_id) if d.refund_id else None} for d in report.differences[:RECORDED_DIFFERENCES]]
    db.session.add(Metric(name=RECONCILIATION_METRIC, value=len(report.differences), recorded_at=report.checked_at,
                          labels={"payments": report.payments, "refunds": report.refunds, "fixed": report.fixed,
                                  "differences": kept,
                                  "truncated": len(report.differences) > RECORDED_DIFFERENCES,
                                  "ran_by": ran_by[:100]}))
    db.session.flush()
    return report


@dataclass(frozen=True)
class LastReconciliation:
    recorded_at: object
    ok: bool
    difference_count: int
    differences: list[dict]
    truncated: bool
    payments: int
    refunds: int
    fixed: int
    ran_by: str


def last_reconciliation() -> LastReconciliation | None:
    """The last recorded run (one statement), or None."""
    from portal.platform.analytics.models import Metric

    metric = db.session.scalar(select(Metric).where(Metric.name == RECONCILIATION_METRIC)
                               .order_by(Metric.recorded_at.desc()).limit(1))
    if metric is None:
        return None
    labels = metric.labels or {}
    return LastReconciliation(metric.recorded_at, int(metric.value) == 0, int(metric.value),
                              list(labels.get("differences", [])), bool(labels.get("truncated")),
                              int(labels.get("payments", 0)), int(labels.get("refunds", 0)),
                              int(labels.get("fixed", 0)), str(labels.get("ran_by", "")))
