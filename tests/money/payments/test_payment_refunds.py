"""Refunds: the course rule, finance's full and partial refunds, holds on the ledger, the
provider settling later or failing, and never more than what is left."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.errors import Forbidden
from portal.learning.education.models import Enrollment, EnrollmentStatus
from portal.money.payments import services
from portal.money.payments.models import Refund, RefundState
from portal.money.payments.providers.base import RefundState as ProviderRefundState
from portal.money.wallets import ledger
from portal.money.wallets.models import Phase, SystemWallet, Transaction, TransactionType
from tests.factories import create_user
from tests.helpers import as_user
from tests.learning.factories.catalog import lessons_of
from tests.money.factories import fund, wallet_of
from tests.money.payments.helpers import RETURN_URL, key, paid_course, student, succeeded_top_up


def finance():
    return create_user("admin")


def holds_of(refund: Refund) -> list[Transaction]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Transaction).where(Transaction.id.in_(refund.hold_transaction_ids))))


def bought_with_card(fake, user, course):
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=key(), method_kind="card", return_url=RETURN_URL)
    services.apply_provider_payment(fake.complete(payment.provider_ref), provider="sandbox", source="webhook")
    return payment


def bought_from_wallet(user, course):
    fund(user, "100")
    with as_user(user):
        return services.pay_course(user, course, idempotency_key=key(), from_wallet=True)


# -- Finance refunds a top-up -------------------------------------------------------------------


def test_a_partial_refund_holds_the_funds_until_the_provider_settles(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "100.00")
    refund = services.refund_payment(finance(), payment, "30.00", "Charged twice by mistake")
    assert refund.state == RefundState.PENDING and refund.provider_ref is not None
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("100.00"), Decimal("30.00"))
    (hold,) = holds_of(refund)
    assert hold.phase == Phase.PENDING and hold.type == TransactionType.REFUND
    settled = fake.settle_refund(refund.provider_ref, ProviderRefundState.SUCCEEDED)
    services.apply_provider_refund(settled, provider="sandbox", source="webhook")
    assert refund.state == RefundState.SUCCEEDED and refund.settled_at is not None
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("70.00"), Decimal("0"))
    assert payment.amount_refunded == Decimal("30.00")
    assert services.refundable(payment) == Decimal("70.00")
    assert ledger.verify().ok


def test_a_failed_refund_releases_the_hold(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50.00")
    refund = services.refund_payment(finance(), payment, "", "Customer asked")
    assert refund.amount == Decimal("50.00")
    failed = fake.settle_refund(refund.provider_ref, ProviderRefundState.FAILED, "Card closed")
    services.apply_provider_refund(failed, provider="sandbox", source="webhook")
    assert refund.state == RefundState.FAILED and refund.failure_reason == "Card closed"
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("50.00"), Decimal("0"))
    assert payment.amount_refunded == 0
    assert services.refundable(payment) == Decimal("50.00")


def test_a_settled_refund_reported_again_changes_nothing(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50.00")
    refund = services.refund_payment(finance(), payment, "20", "Goodwill")
    settled = fake.settle_refund(refund.provider_ref, ProviderRefundState.SUCCEEDED)
    services.apply_provider_refund(settled, provider="sandbox", source="webhook")
    services.apply_provider_refund(settled, provider="sandbox", source="poll")
    late_failure = fake.settle_refund(refund.provider_ref, ProviderRefundState.FAILED)
    services.apply_provider_refund(late_failure, provider="sandbox", source="webhook")
    assert refund.state == RefundState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("30.00")
    assert payment.amount_refunded == Decimal("20")


def test_refunds_add_up_to_at_most_what_was_captured(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "100.00")
    staff = finance()
    services.refund_payment(staff, payment, "60", "First part")
    with pytest.raises(services.RefundRefused) as refused:
        services.refund_payment(staff, payment, "40.01", "Too much")
    assert "40.00" in refused.value.message
    services.refund_payment(staff, payment, "40", "The rest")
    with pytest.raises(services.RefundRefused):
        services.refund_payment(staff, payment, "0.01", "Nothing left")


def test_a_refund_needs_the_money_still_in_the_wallet(fake):
    user, other = student(), student()
    payment = succeeded_top_up(fake, user, "50.00")
    fund(other, "0.01")
    with ledger.as_ledger():
        ledger.post([ledger.Leg(wallet_of(user), wallet_of(other), Decimal("45"), TransactionType.TRANSFER)])
    with pytest.raises(services.RefundRefused) as refused:
        services.refund_payment(finance(), payment, "50", "Asked")
    assert "no longer holds" in refused.value.message


def test_the_provider_refusing_a_refund_changes_nothing(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50.00")
    fake.refund_mode = "decline"
    with pytest.raises(services.RefundRefused), db.session.begin_nested():
        services.refund_payment(finance(), payment, "50", "Asked")
    assert wallet_of(user).locked_balance == 0
    assert db.session.scalar(select(Refund).where(Refund.payment_id == payment.id)) is None


def test_provider_down_keeps_the_refund_pending_and_the_job_sends_it_again(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50.00")
    fake.refund_mode = "down"
    refund = services.refund_payment(finance(), payment, "10", "Asked")
    assert refund.state == RefundState.PENDING and refund.provider_ref is None
    fake.refund_mode = "succeed"
    services.resume_refund(refund)
    assert refund.state == RefundState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("40.00")
    services.resume_refund(refund)
    assert len(fake.refunds) == 1


def test_only_finance_refunds(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50.00")
    with pytest.raises(Forbidden):
        services.refund_payment(user, payment, "10", "Me")
    with pytest.raises(Forbidden):
        services.refund_payment(create_user("faculty"), payment, "10", "Me")


def test_finance_must_give_a_reason(fake):
    payment = succeeded_top_up(fake, student(), "50.00")
    with pytest.raises(services.RefundRefused) as refused:
        services.refund_payment(finance(), payment, "10", "  ")
    assert refused.value.field == "reason"


# -- A student asks for a course refund -----------------------------------------------------------


def test_a_course_bought_recently_with_little_progress_is_refunded_at_once(fake):
    user, course = student(), paid_course("19.00")
    payment = bought_from_wallet(user, course)
    assert wallet_of(user).balance == Decimal("81.00")
    with as_user(user):
        refund = services.request_course_refund(user, payment, "Not what I expected")
    assert refund.automatic and refund.state == RefundState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("100.00")
    assert payment.amount_refunded == Decimal("19.00")
    enrollment = db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id))
    assert enrollment.status == EnrollmentStatus.LEFT
    # The course is no longer owned: entering again means buying again.
    from portal.learning.education import services as education

    with as_user(user), pytest.raises(education.PaymentRequired):
        education.enrol(user, course.id)


def test_a_card_bought_course_refund_goes_back_to_the_card(fake):
    user, course = student(), paid_course("19.00")
    payment = bought_with_card(fake, user, course)
    with as_user(user):
        refund = services.request_course_refund(user, payment, "")
    assert refund.automatic and refund.state == RefundState.PENDING
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("19.00"), Decimal("19.00"))
    services.apply_provider_refund(fake.settle_refund(refund.provider_ref), provider="sandbox", source="webhook")
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("0"), Decimal("0"))
    assert ledger.verify().ok


def test_a_course_refund_asked_late_waits_for_finance(fake, app):
    user, course = student(), paid_course("19.00")
    payment = bought_from_wallet(user, course)
    payment.credited_at = payment.credited_at - timedelta(days=app.config["COURSE_REFUND_DAYS"] + 1)
    db.session.flush()
    with as_user(user):
        refund = services.request_course_refund(user, payment, "Changed my mind")
    assert refund.state == RefundState.REQUESTED and not refund.automatic
    assert wallet_of(user).balance == Decimal("81.00")
    with as_user(user), pytest.raises(services.RefundRefused):
        services.request_course_refund(user, payment, "Again")
    staff = finance()
    services.decide_refund(staff, refund, approve=True, note="Fine")
    assert refund.state == RefundState.SUCCEEDED and refund.decided_by_id == staff.id
    assert wallet_of(user).balance == Decimal("100.00")


def test_a_course_refund_with_much_progress_waits_and_can_be_rejected(fake, app):
    from portal.learning.education import services as education

    user, course = student(), paid_course("19.00", lessons=4)
    payment = bought_from_wallet(user, course)
    with as_user(user):
        for lesson in lessons_of(course)[:2]:
            education.complete_lesson(user, lesson.id)
    assert app.config["COURSE_REFUND_MAX_PROGRESS_PERCENT"] < 50
    with as_user(user):
        refund = services.request_course_refund(user, payment, "Too hard")
    assert refund.state == RefundState.REQUESTED
    with pytest.raises(services.RefundRefused):
        services.decide_refund(finance(), refund, approve=False, note="")
    services.decide_refund(finance(), refund, approve=False, note="Half of it is done already")
    assert refund.state == RefundState.REJECTED
    assert wallet_of(user).balance == Decimal("81.00")
    assert db.session.scalar(select(Enrollment.status).where(Enrollment.user_id == user.id)) == EnrollmentStatus.ACTIVE


def test_a_student_cannot_ask_a_refund_of_someone_elses_purchase(fake):
    from portal.errors import NotFound

    user, other, course = student(), student(), paid_course()
    payment = bought_from_wallet(user, course)
    with pytest.raises(NotFound):
        services.request_course_refund(other, payment, "Mine?")


def test_a_top_up_is_not_refunded_through_the_course_rule(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "20")
    with as_user(user), pytest.raises(services.RefundRefused):
        services.request_course_refund(user, payment, "")


def test_sales_give_back_what_they_took(fake):
    user, course = student(), paid_course("19.00")
    before = ledger.system_balance(SystemWallet.SALES, "USD")
    payment = bought_from_wallet(user, course)
    assert ledger.system_balance(SystemWallet.SALES, "USD") == before + Decimal("19.00")
    with as_user(user):
        services.request_course_refund(user, payment, "")
    assert ledger.system_balance(SystemWallet.SALES, "USD") == before


def test_a_resent_refund_the_provider_refuses_fails_and_releases_the_hold(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50.00")
    fake.refund_mode = "down"
    refund = services.refund_payment(finance(), payment, "10", "Asked")
    fake.refund_mode = "decline"
    services.resume_refund(refund)
    assert refund.state == RefundState.FAILED and "refused" in refund.failure_reason
    wallet = wallet_of(user)
    assert (wallet.balance, wallet.locked_balance) == (Decimal("50.00"), Decimal("0"))
