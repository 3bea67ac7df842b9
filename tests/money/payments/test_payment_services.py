"""Top-ups, applying providers' reports, the ledger's legs, saved methods and course purchases."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.compliance.security.models import BlockedEntity, BlockKind, BlockSource
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Forbidden
from portal.learning.education import services as education
from portal.learning.education.models import Enrollment, EnrollmentStatus
from portal.money.currency import InvalidAmount, UnknownCurrency
from portal.money.payments import services
from portal.money.payments.models import EventSource, Payment, PaymentEvent, PaymentMethod, PayWith, Purpose
from portal.money.payments.providers.base import PaymentState
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionType, WalletStatus
from tests.helpers import as_user
from tests.money.factories import fund, wallet_of
from tests.money.payments.helpers import RETURN_URL, key, paid_course, student, succeeded_top_up, top_up


def ledger_rows(payment: Payment) -> list[Transaction]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Transaction).where(Transaction.group_id == payment.ledger_group_id)
                                       .order_by(Transaction.type)))


def events_of(payment: Payment) -> list[PaymentEvent]:
    return list(db.session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)
                                   .order_by(PaymentEvent.created_at, PaymentEvent.id)))


# -- Starting a top-up ----------------------------------------------------------------------------


def test_a_top_up_starts_at_the_provider_and_waits_for_the_payer(fake):
    user = student()
    payment = top_up(user, "25.00")
    assert payment.state == PaymentState.REQUIRES_ACTION
    assert payment.provider == "sandbox" and payment.provider_ref.startswith("pay_")
    assert payment.next_action_url == f"https://psp.invalid/pay/{payment.provider_ref}"
    assert payment.amount == Decimal("25.00") and payment.purpose == Purpose.TOP_UP
    stored = fake.payments[payment.provider_ref]
    assert stored.payment.metadata == {"portal_payment_id": str(payment.id)}
    assert stored.idempotency_key == services.provider_idempotency_key(payment)
    assert payment.credited_at is None
    assert wallet_of(user).balance == 0
    assert [e.kind for e in events_of(payment)] == ["created", "state"]


def test_the_same_checkout_key_gives_the_same_payment(fake):
    user = student()
    form_key = key()
    first = top_up(user, "25.00", idempotency_key=form_key)
    second = top_up(user, "25.00", idempotency_key=form_key)
    assert first.id == second.id
    assert fake.calls.count("create_payment") == 1
    assert db.session.scalar(select(func.count()).select_from(Payment).where(Payment.user_id == user.id)) == 1


def test_the_same_checkout_key_with_another_amount_is_refused(fake):
    user = student()
    form_key = key()
    top_up(user, "25.00", idempotency_key=form_key)
    with pytest.raises(services.IdempotencyMismatch):
        top_up(user, "30.00", idempotency_key=form_key)


@pytest.mark.parametrize(("amount", "code", "error", "field"), [
    ("0", "USD", InvalidAmount, "amount"),
    ("-5", "USD", InvalidAmount, "amount"),
    ("10.001", "USD", InvalidAmount, "amount"),
    ("abc", "USD", InvalidAmount, "amount"),
    ("0.50", "USD", services.InvalidPayment, "amount"),
    ("10", "XYZ", UnknownCurrency, "currency"),
    ("10", "AZR", services.InvalidPayment, "currency"),
])
def test_bad_amounts_are_refused_with_a_field_message(fake, amount, code, error, field):
    user = student()
    with pytest.raises(error) as refused:
        top_up(user, amount, code)
    assert refused.value.field == field
    assert refused.value.message
    assert fake.calls == []


def test_the_maximum_depends_on_the_verification_level_and_counts_the_last_day(fake, app):
    user = student()
    _minimum, maximum = services.top_up_limits(user, "USD")
    assert Decimal(0) < maximum <= Decimal("10000")
    with pytest.raises(services.TopUpLimitExceeded) as refused:
        top_up(user, str(maximum + Decimal("0.01")))
    assert "verification level" in refused.value.message
    top_up(user, str(maximum))
    assert services.top_up_limits(user, "USD")[1] == 0


def test_a_failed_top_up_does_not_count_toward_the_limit(fake):
    user = student()
    payment = top_up(user, "100")
    services.apply_provider_payment(fake.complete(payment.provider_ref, PaymentState.FAILED), provider="sandbox",
                                    source="webhook")
    assert services.topped_up_in_window(user.id, "USD") == 0


def test_unknown_method_kind_is_a_field_error(fake):
    with pytest.raises(services.MethodInvalid) as refused:
        top_up(student(), "10", kind="cheque")
    assert refused.value.field == "method"


def test_only_students_pay(fake):
    from tests.factories import create_user

    with pytest.raises(Forbidden):
        top_up(create_user("faculty"), "10")


def test_a_payer_blocked_by_compliance_cannot_pay(fake):
    user = student()
    db.session.add(BlockedEntity(kind=BlockKind.USER, user_id=user.id, reason="fraud", source=BlockSource.ADMIN))
    db.session.flush()
    with pytest.raises(services.PayerBlocked):
        top_up(user, "10")
    assert fake.calls == []


def test_a_frozen_wallet_cannot_be_topped_up(fake):
    user = student()
    fund(user, "1")
    wallet = wallet_of(user)
    with ledger.as_ledger():
        wallet.status = WalletStatus.FROZEN
        db.session.flush()
    with pytest.raises(services.PayerBlocked) as refused:
        top_up(user, "10")
    assert "frozen" in refused.value.message


def test_provider_down_keeps_the_payment_for_reconciliation(fake):
    user = student()
    fake.down = True
    payment = top_up(user, "10")
    assert payment.needs_reconcile and payment.provider_ref is None
    assert payment.state == PaymentState.REQUIRES_PAYMENT_METHOD
    with pytest.raises(services.ProviderDown) as refused:
        services.raise_if_unreachable(payment)
    assert "not answering" in refused.value.message
    # Later the provider answers: the job creates it with the same key, once.
    fake.down = False
    services.resume_payment(None, payment)
    assert payment.provider_ref is not None and not payment.needs_reconcile
    assert payment.state == PaymentState.REQUIRES_ACTION
    services.resume_payment(None, payment)
    assert len(fake.payments) == 1


# -- Applying the provider's reports --------------------------------------------------------------


def test_success_credits_the_wallet_gross_with_the_fee_as_its_own_leg(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "100.00")
    assert payment.state == PaymentState.SUCCEEDED and payment.credited_at is not None
    fee = fake.fee_for(Decimal("100.00"))
    assert payment.fee == fee == Decimal("3.20")
    assert wallet_of(user).balance == Decimal("100.00")
    rows = ledger_rows(payment)
    assert sorted((r.type, r.amount) for r in rows) == sorted([(TransactionType.TOP_UP, Decimal("100.00")),
                                                               (TransactionType.FEE, fee)])
    clearing = ledger.system_wallet(SystemWallet.CLEARING_SANDBOX, "USD", spread_by=user.id)
    top = next(r for r in rows if r.type == TransactionType.TOP_UP)
    fee_leg = next(r for r in rows if r.type == TransactionType.FEE)
    assert top.debit_wallet_id == clearing.id and top.credit_user_id == user.id
    assert fee_leg.credit_wallet_id == clearing.id
    provider_fees = ledger.system_wallet(SystemWallet.PROVIDER_FEES, "USD", spread_by=user.id)
    assert fee_leg.debit_wallet_id == provider_fees.id  # the portal's expense, not the fees it collects
    assert ledger.verify().ok


def test_success_reported_twice_credits_once(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "40")
    again = fake.payments[payment.provider_ref].payment
    services.apply_provider_payment(again, provider="sandbox", source="poll")
    services.apply_provider_payment(again, provider="sandbox", source="webhook", event_id="evt_again")
    assert wallet_of(user).balance == Decimal("40")
    assert len([e for e in events_of(payment) if e.kind == "credited"]) == 1


def test_out_of_order_reports_never_move_a_payment_back(fake):
    user = student()
    payment = top_up(user, "15", kind="mobile_money")
    processing = fake.complete(payment.provider_ref, PaymentState.PROCESSING)
    succeeded = fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    services.apply_provider_payment(succeeded, provider="sandbox", source="webhook")
    services.apply_provider_payment(processing, provider="sandbox", source="webhook")
    assert payment.state == PaymentState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("15")
    assert events_of(payment)[-1].kind == "report"


def test_a_failed_payment_credits_nothing_and_keeps_the_reason(fake):
    user = student()
    payment = top_up(user, "15")
    failed = fake.complete(payment.provider_ref, PaymentState.FAILED, failure_code="stolen_card",
                           failure_message="Your card was declined.")
    services.apply_provider_payment(failed, provider="sandbox", source="webhook")
    assert payment.state == PaymentState.FAILED and payment.credited_at is None
    assert (payment.failure_code, payment.failure_message) == ("stolen_card", "Your card was declined.")
    assert wallet_of(user).balance == 0
    late_success = fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    services.apply_provider_payment(late_success, provider="sandbox", source="webhook")
    assert payment.state == PaymentState.FAILED and wallet_of(user).balance == 0


def test_a_report_with_another_amount_is_recorded_not_applied(fake):
    from dataclasses import replace

    user = student()
    payment = top_up(user, "15")
    forged = replace(fake.complete(payment.provider_ref, PaymentState.SUCCEEDED), amount=Decimal("1500"))
    services.apply_provider_payment(forged, provider="sandbox", source="webhook")
    assert payment.state == PaymentState.REQUIRES_ACTION and wallet_of(user).balance == 0
    assert events_of(payment)[-1].kind == "mismatch"


def test_a_report_about_an_unknown_payment_changes_nothing(fake):
    from portal.money.payments.providers.base import ProviderPayment

    stranger = ProviderPayment(ref="pay_unknown", state=PaymentState.SUCCEEDED, amount=Decimal(5), currency="USD")
    assert services.apply_provider_payment(stranger, provider="sandbox", source="webhook") is None


def test_a_report_is_found_by_the_provider_ref_without_metadata(fake):
    from dataclasses import replace

    user = student()
    payment = top_up(user, "12")
    bare = replace(fake.complete(payment.provider_ref), metadata={})
    assert services.apply_provider_payment(bare, provider="sandbox", source="webhook").id == payment.id
    assert payment.state == PaymentState.SUCCEEDED


def test_a_receipt_email_and_notification_on_success(fake):
    from portal.platform.email.models import Email

    user = student()
    succeeded_top_up(fake, user, "20")
    email = db.session.scalar(select(Email).where(Email.user_id == user.id, Email.template == "payment_receipt"))
    assert email is not None and "20.00 USD" in email.body_text


# -- Saved methods --------------------------------------------------------------------------------


def test_a_method_is_saved_when_the_payer_asked_and_charged_again_off_session(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "20", save_method=True)
    methods = services.list_methods(user)
    assert [(m.brand, m.last4, m.is_default, m.kind) for m in methods] == [("visa", "4242", True, PayWith.CARD)]
    assert payment.method_id == methods[0].id
    fake.mode = "succeed"
    again = top_up(user, "30", saved_method_id=methods[0].id)
    assert again.state == PaymentState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("50")


def test_a_saved_method_declined_off_session_fails_the_payment(fake):
    user = student()
    succeeded_top_up(fake, user, "20", save_method=True)
    method = services.list_methods(user)[0]
    fake.mode = "decline"
    with pytest.raises(services.PaymentDeclined) as refused:
        top_up(user, "30", saved_method_id=method.id)
    assert "insufficient funds" in refused.value.message


def test_another_users_method_cannot_be_used(fake):
    owner, other = student(), student()
    succeeded_top_up(fake, owner, "20", save_method=True)
    method = services.list_methods(owner)[0]
    with pytest.raises(services.MethodInvalid):
        top_up(other, "30", saved_method_id=method.id)


def test_default_and_removal_of_methods(fake):
    user = student()
    succeeded_top_up(fake, user, "20", save_method=True)
    succeeded_top_up(fake, user, "21", save_method=True)
    first, second = sorted(services.list_methods(user), key=lambda m: m.created_at)
    assert first.is_default and not second.is_default
    with as_user(user):
        services.set_default_method(user, second.id)
    db.session.refresh(first)
    assert second.is_default and not first.is_default
    with as_user(user):
        services.remove_method(user, second.id)
    assert fake.detached == [second.provider_ref]
    db.session.refresh(first)
    assert second.removed_at is not None and not second.is_default
    assert first.is_default
    assert [m.id for m in services.list_methods(user)] == [first.id]


def test_removing_a_method_while_the_provider_is_down_changes_nothing(fake):
    user = student()
    succeeded_top_up(fake, user, "20", save_method=True)
    method = services.list_methods(user)[0]
    fake.down = True
    with as_user(user), pytest.raises(services.ProviderDown):
        services.remove_method(user, method.id)
    assert method.removed_at is None


def test_someone_elses_method_cannot_be_removed(fake):
    owner, other = student(), student()
    succeeded_top_up(fake, owner, "20", save_method=True)
    method = services.list_methods(owner)[0]
    from portal.errors import NotFound

    with pytest.raises(NotFound):
        services.remove_method(other, method.id)
    assert db.session.get(PaymentMethod, method.id).removed_at is None


# -- Courses --------------------------------------------------------------------------------------


def test_a_paid_course_cannot_be_entered_without_paying(fake):
    user, course = student(), paid_course()
    with as_user(user), pytest.raises(education.PaymentRequired):
        education.enrol(user, course.id)


def test_buying_a_course_from_the_wallet_moves_to_sales_and_enrols(fake):
    user, course = student(), paid_course("19.00")
    fund(user, "50")
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=key(), from_wallet=True)
    assert payment.state == PaymentState.SUCCEEDED and payment.provider == "wallet"
    assert wallet_of(user).balance == Decimal("31.00")
    assert ledger.system_balance(SystemWallet.SALES, "USD") >= Decimal("19.00")
    (row,) = ledger_rows(payment)
    assert row.type == TransactionType.PURCHASE and row.amount == Decimal("19.00")
    enrollment = db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id,
                                                            Enrollment.course_id == course.id))
    assert enrollment.status == EnrollmentStatus.ACTIVE


def test_buying_from_a_wallet_without_enough_money_changes_nothing(fake):
    user, course = student(), paid_course("19.00")
    fund(user, "5")
    with as_user(user), pytest.raises(ledger.InsufficientFunds):
        services.pay_course(user, course, idempotency_key=key(), from_wallet=True)


def test_buying_a_course_with_a_card_enrols_on_success_only(fake):
    user, course = student(), paid_course("19.00")
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=key(), method_kind="card", return_url=RETURN_URL)
    assert payment.purpose == Purpose.COURSE_PURCHASE and payment.state == PaymentState.REQUIRES_ACTION
    assert db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id)) is None
    services.apply_provider_payment(fake.complete(payment.provider_ref), provider="sandbox", source="webhook")
    assert payment.state == PaymentState.SUCCEEDED
    enrollment = db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id))
    assert enrollment is not None and enrollment.course_id == course.id
    assert wallet_of(user).balance == 0  # credited and spent on the course in one movement
    assert sorted(r.type for r in ledger_rows(payment)) == sorted([TransactionType.TOP_UP, TransactionType.FEE,
                                                                   TransactionType.PURCHASE])


def test_card_purchase_and_enrolment_commit_together_or_not_at_all(fake, monkeypatch):
    user, course = student(), paid_course("19.00")
    with as_user(user):
        payment = services.pay_course(user, course, idempotency_key=key(), method_kind="card", return_url=RETURN_URL)
    snapshot = fake.complete(payment.provider_ref)

    def broken(*_args, **_kwargs):
        raise RuntimeError("enrolment failed")

    monkeypatch.setattr(education, "enrol", broken)
    with pytest.raises(RuntimeError), db.session.begin_nested():
        services.apply_provider_payment(snapshot, provider="sandbox", source="webhook")
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).state == PaymentState.REQUIRES_ACTION
    wallet = wallet_of(user)
    assert wallet is None or wallet.balance == 0
    with ledger.as_ledger():
        moved = db.session.scalar(select(func.count()).select_from(Transaction).where(
            Transaction.details["payment_id"].astext == str(payment.id)))
    assert moved == 0
    assert db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id)) is None


def test_a_free_course_is_not_sold(fake):
    from tests.learning.factories.catalog import make_course

    with pytest.raises(services.NotPayable):
        services.pay_course(student(), make_course(), idempotency_key=key(), from_wallet=True)


def test_a_course_owned_and_left_is_entered_again_without_paying(fake):
    user, course = student(), paid_course("19.00")
    fund(user, "50")
    with as_user(user):
        first = services.pay_course(user, course, idempotency_key=key(), from_wallet=True)
        education.leave(user, course.id)
        again = services.pay_course(user, course, idempotency_key=key(), from_wallet=True)
    assert again.id == first.id
    assert wallet_of(user).balance == Decimal("31.00")
    with as_user(user), pytest.raises(services.NotPayable):
        services.pay_course(user, course, idempotency_key=key(), from_wallet=True)


def test_faculty_sets_a_price_on_their_course_only(fake):
    from tests.factories import create_user
    from tests.learning.factories.catalog import make_course

    teacher, other = create_user("faculty"), create_user("faculty")
    course = make_course(instructor=teacher)
    services.set_course_price(teacher, course, "19.00", "usd")
    assert (course.price, course.price_currency, course.is_paid) == (Decimal("19.00"), "USD", True)
    with pytest.raises(Forbidden):
        services.set_course_price(other, course, "5", "USD")
    with pytest.raises(InvalidAmount):
        services.set_course_price(teacher, course, "1.234", "USD")
    services.set_course_price(teacher, course, "", None)
    assert course.price is None and not course.is_paid


def test_stuck_payments_are_the_ones_waiting_longer_than_the_setting(fake, app):
    from portal.money.payments import queries

    user = student()
    payment = top_up(user, "10")
    assert payment.id not in {p.id for p in queries.stuck_payments(limit=1000)}
    payment.updated_at = utcnow() - timedelta(minutes=app.config["PAYMENT_STUCK_MINUTES"] + 1)
    db.session.flush()
    assert payment.id in {p.id for p in queries.stuck_payments(limit=1000)}


def test_timeline_records_sources(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "10")
    assert {e.source for e in events_of(payment)} >= {EventSource.PORTAL, EventSource.WEBHOOK}


def test_a_succeeded_payment_has_a_pdf_receipt_for_its_payer_only(fake):
    from portal.errors import Conflict, NotFound
    from portal.money.payments.receipt_pdf import receipt_pdf

    user, other = student(), student()
    payment = succeeded_top_up(fake, user, "20")
    pdf = receipt_pdf(user, payment)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    with pytest.raises(NotFound):
        receipt_pdf(other, payment)
    pending = top_up(user, "10")
    with pytest.raises(Conflict):
        receipt_pdf(user, pending)


def test_the_demo_sells_one_course(fake):
    from portal.learning.education.models import Course
    from portal.money import demo

    slug, price, code = demo.PAID_COURSE
    course = db.session.scalar(select(Course).where(Course.slug == slug))
    if course is None:
        from tests.learning.factories.catalog import make_course

        course = make_course(slug=slug)
    course.price, course.price_currency = None, None
    db.session.flush()
    created = {"prices": 0}
    demo._course_price(created)
    demo._course_price(created)
    assert (course.price, course.price_currency, created["prices"]) == (price, code, 1)


def test_the_payer_cancels_an_unpaid_payment_but_not_a_paid_one(fake):
    from portal.errors import Conflict, NotFound

    user, other = student(), student()
    payment = top_up(user, "20")
    with pytest.raises(NotFound):
        services.cancel_payment(other, payment)
    with as_user(user):
        services.cancel_payment(user, payment)
    assert payment.state == PaymentState.CANCELED
    assert fake.payments[payment.provider_ref].payment.state == PaymentState.CANCELED
    paid = succeeded_top_up(fake, user, "20")
    with as_user(user), pytest.raises(Conflict):
        services.cancel_payment(user, paid)


def test_the_enrol_button_of_a_paid_course_says_to_buy_it(client, login_as, fake):
    user = login_as("student")
    course = paid_course("19.00")
    response = client.post(f"/learning/courses/{course.slug}/enrol", headers={"HX-Request": "true"})
    assert response.status_code == 402
    assert "buy it from its page" in response.get_data(as_text=True)
    assert db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id)) is None


def test_a_fee_told_after_the_credit_is_booked_once(fake):
    from dataclasses import replace

    user = student()
    payment = top_up(user, "100.00")
    succeeded = fake.complete(payment.provider_ref)
    services.apply_provider_payment(replace(succeeded, fee=None), provider="sandbox", source="webhook")
    assert payment.fee is None and wallet_of(user).balance == Decimal("100.00")
    services.apply_provider_payment(succeeded, provider="sandbox", source="poll")
    services.apply_provider_payment(succeeded, provider="sandbox", source="webhook")
    assert payment.fee == Decimal("3.20")
    fees = [r for r in ledger_rows(payment) if r.type == TransactionType.FEE]
    assert [r.amount for r in fees] == [Decimal("3.20")]
    from portal.money.payments import reconcile

    assert reconcile.reconcile(user_id=user.id).ok
