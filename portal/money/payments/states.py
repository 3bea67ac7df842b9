"""The states of payments and refunds and how they may change, in one place.

Two rules:

- ``PAYMENT_TRANSITIONS`` / ``REFUND_TRANSITIONS`` list every allowed change; ``move_payment`` /
  ``move_refund`` raise ``ForbiddenTransition`` for any other.
- Providers' reports arrive late, twice and out of order (a ``processing`` webhook after the
  ``succeeded`` one). ``forward`` decides what a report means for a payment: its state moves
  only forward along ``PAYMENT_RANK``; a report that would move it back, or sideways from one
  end state to another, is ignored (recorded on the timeline, nothing changes). An end state
  (succeeded, canceled, failed) is final.

A payment starts ``requires_payment_method``; the hosted page or a challenge makes it
``requires_action``; a mobile-money payment waits in ``processing``; it ends ``succeeded``,
``failed`` or ``canceled``. A declined attempt on the hosted page may go back to
``requires_payment_method`` at some providers (Stripe): that one step back is allowed while the
payment has not ended, because the provider's own object did it.
"""

from __future__ import annotations

from portal.errors import Conflict
from portal.money.payments.models import RefundState
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.providers.base import RefundState as ProviderRefundState

P = PaymentState

PAYMENT_TRANSITIONS: dict[PaymentState, frozenset[PaymentState]] = {
    P.REQUIRES_PAYMENT_METHOD: frozenset({P.REQUIRES_ACTION, P.PROCESSING, P.SUCCEEDED, P.CANCELED, P.FAILED}),
    P.REQUIRES_ACTION: frozenset({P.REQUIRES_PAYMENT_METHOD, P.PROCESSING, P.SUCCEEDED, P.CANCELED, P.FAILED}),
    P.PROCESSING: frozenset({P.SUCCEEDED, P.CANCELED, P.FAILED}),
    P.SUCCEEDED: frozenset(),
    P.CANCELED: frozenset(),
    P.FAILED: frozenset(),
}

#: How far along a payment is; a report of a lower rank never moves it back (but see the
#: module's note on ``requires_action`` -> ``requires_payment_method``).
PAYMENT_RANK: dict[PaymentState, int] = {
    P.REQUIRES_PAYMENT_METHOD: 0, P.REQUIRES_ACTION: 1, P.PROCESSING: 2,
    P.SUCCEEDED: 3, P.CANCELED: 3, P.FAILED: 3,
}

FINAL_PAYMENT_STATES = frozenset({P.SUCCEEDED, P.CANCELED, P.FAILED})
#: States in which the payer may still be paying (the reconciliation job asks about these).
OPEN_PAYMENT_STATES = frozenset({P.REQUIRES_PAYMENT_METHOD, P.REQUIRES_ACTION, P.PROCESSING})

R = RefundState

REFUND_TRANSITIONS: dict[RefundState, frozenset[RefundState]] = {
    R.REQUESTED: frozenset({R.PENDING, R.REJECTED, R.CANCELED}),
    R.PENDING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
    R.CANCELED: frozenset(),
    R.REJECTED: frozenset(),
}

FINAL_REFUND_STATES = frozenset({R.SUCCEEDED, R.FAILED, R.CANCELED, R.REJECTED})
#: Refunds that count against what may still be refunded.
OUTSTANDING_REFUND_STATES = frozenset({R.REQUESTED, R.PENDING, R.SUCCEEDED})


class ForbiddenTransition(Conflict):
    """A state change the tables do not allow (a bug or a stale page, never applied)."""


def can_move_payment(current: PaymentState, to: PaymentState) -> bool:
    return to in PAYMENT_TRANSITIONS[PaymentState(current)]


def move_payment(payment, to: PaymentState) -> PaymentState:
    """Set ``payment.state`` to ``to``; raises ``ForbiddenTransition`` if not allowed. Returns the
    previous state."""
    current = PaymentState(payment.state)
    to = PaymentState(to)
    if not can_move_payment(current, to):
        raise ForbiddenTransition(f"A payment that is {current.value.replace('_', ' ')} cannot become "
                                  f"{to.value.replace('_', ' ')}.")
    payment.state = to
    return current


def forward(current: PaymentState, reported: PaymentState) -> PaymentState | None:
    """The state a payment in ``current`` moves to when a provider reports ``reported``, or None
    when the report changes nothing (the same state, an older one, or after the end)."""
    current, reported = PaymentState(current), PaymentState(reported)
    if current == reported or current in FINAL_PAYMENT_STATES:
        return None
    if PAYMENT_RANK[reported] < PAYMENT_RANK[current]:
        # Only the provider's own step back from a challenge to "pay again" is believed.
        if current == P.REQUIRES_ACTION and reported == P.REQUIRES_PAYMENT_METHOD:
            return reported
        return None
    return reported if can_move_payment(current, reported) else None


def can_move_refund(current: RefundState, to: RefundState) -> bool:
    return to in REFUND_TRANSITIONS[RefundState(current)]


def move_refund(refund, to: RefundState) -> RefundState:
    current = RefundState(refund.state)
    to = RefundState(to)
    if not can_move_refund(current, to):
        raise ForbiddenTransition(f"A refund that is {current.value} cannot become {to.value}.")
    refund.state = to
    return current


def refund_state_from_provider(state: ProviderRefundState) -> RefundState:
    """The portal's refund state for the provider's (same names)."""
    return RefundState(ProviderRefundState(state).value)


def forward_refund(current: RefundState, reported: ProviderRefundState) -> RefundState | None:
    """The state a refund moves to on a provider's report, or None (no change, or not allowed:
    a report about a refund already settled, or one not sent yet)."""
    to = refund_state_from_provider(reported)
    current = RefundState(current)
    if current == to or current != R.PENDING:
        return None
    return to if can_move_refund(current, to) else None
