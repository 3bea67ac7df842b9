"""The transition tables of payments and refunds, and forward-only application of reports."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from portal.money.payments import states as st
from portal.money.payments.models import RefundState
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.providers.base import RefundState as ProviderRefundState

P = PaymentState
R = RefundState
ALLOWED_PAYMENT = {
    (P.REQUIRES_PAYMENT_METHOD, P.REQUIRES_ACTION), (P.REQUIRES_PAYMENT_METHOD, P.PROCESSING),
    (P.REQUIRES_PAYMENT_METHOD, P.SUCCEEDED), (P.REQUIRES_PAYMENT_METHOD, P.CANCELED),
    (P.REQUIRES_PAYMENT_METHOD, P.FAILED),
    (P.REQUIRES_ACTION, P.REQUIRES_PAYMENT_METHOD), (P.REQUIRES_ACTION, P.PROCESSING),
    (P.REQUIRES_ACTION, P.SUCCEEDED), (P.REQUIRES_ACTION, P.CANCELED), (P.REQUIRES_ACTION, P.FAILED),
    (P.PROCESSING, P.SUCCEEDED), (P.PROCESSING, P.CANCELED), (P.PROCESSING, P.FAILED),
}
ALLOWED_REFUND = {
    (R.REQUESTED, R.PENDING), (R.REQUESTED, R.REJECTED), (R.REQUESTED, R.CANCELED),
    (R.PENDING, R.SUCCEEDED), (R.PENDING, R.FAILED), (R.PENDING, R.CANCELED),
}


@pytest.mark.parametrize("current", list(P))
@pytest.mark.parametrize("to", list(P))
def test_every_payment_transition_is_allowed_or_refused_as_the_table_says(current, to):
    payment = SimpleNamespace(state=current)
    if (current, to) in ALLOWED_PAYMENT:
        assert st.move_payment(payment, to) == current and payment.state == to
    else:
        with pytest.raises(st.ForbiddenTransition):
            st.move_payment(payment, to)
        assert payment.state == current


@pytest.mark.parametrize("current", list(R))
@pytest.mark.parametrize("to", list(R))
def test_every_refund_transition_is_allowed_or_refused_as_the_table_says(current, to):
    refund = SimpleNamespace(state=current)
    if (current, to) in ALLOWED_REFUND:
        assert st.move_refund(refund, to) == current and refund.state == to
    else:
        with pytest.raises(st.ForbiddenTransition):
            st.move_refund(refund, to)
        assert refund.state == current


@pytest.mark.parametrize(("current", "reported", "expected"), [
    (P.REQUIRES_ACTION, P.SUCCEEDED, P.SUCCEEDED),
    (P.REQUIRES_ACTION, P.PROCESSING, P.PROCESSING),
    (P.PROCESSING, P.SUCCEEDED, P.SUCCEEDED),
    (P.PROCESSING, P.REQUIRES_ACTION, None),  # late: never back
    (P.PROCESSING, P.REQUIRES_PAYMENT_METHOD, None),
    (P.SUCCEEDED, P.PROCESSING, None),
    (P.SUCCEEDED, P.FAILED, None),  # one end never becomes another
    (P.FAILED, P.SUCCEEDED, None),
    (P.CANCELED, P.SUCCEEDED, None),
    (P.REQUIRES_ACTION, P.REQUIRES_ACTION, None),  # the same: nothing to do
    (P.REQUIRES_ACTION, P.REQUIRES_PAYMENT_METHOD, P.REQUIRES_PAYMENT_METHOD),  # the challenge failed, pay again
    (P.REQUIRES_PAYMENT_METHOD, P.FAILED, P.FAILED),
])
def test_reports_move_a_payment_forward_only(current, reported, expected):
    assert st.forward(current, reported) == expected


@pytest.mark.parametrize(("current", "reported", "expected"), [
    (R.PENDING, ProviderRefundState.SUCCEEDED, R.SUCCEEDED),
    (R.PENDING, ProviderRefundState.FAILED, R.FAILED),
    (R.PENDING, ProviderRefundState.PENDING, None),
    (R.SUCCEEDED, ProviderRefundState.FAILED, None),
    (R.FAILED, ProviderRefundState.SUCCEEDED, None),
    (R.REQUESTED, ProviderRefundState.SUCCEEDED, None),  # not sent yet: a report cannot settle it
])
def test_reports_settle_a_refund_once(current, reported, expected):
    assert st.forward_refund(current, reported) == expected


def test_every_state_has_a_row_in_its_table():
    assert set(st.PAYMENT_TRANSITIONS) == set(P) and set(st.PAYMENT_RANK) == set(P)
    assert set(st.REFUND_TRANSITIONS) == set(R)
    assert all(not st.PAYMENT_TRANSITIONS[s] for s in st.FINAL_PAYMENT_STATES)
    assert all(not st.REFUND_TRANSITIONS[s] for s in st.FINAL_REFUND_STATES)
