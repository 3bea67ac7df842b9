"""The polling job and the reconciliation report (``flask payments reconcile``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import update

from portal.db import db
from portal.db.base import utcnow
from portal.money.payments import reconcile, services, tasks
from portal.money.payments.models import Payment, RefundState
from portal.money.payments.providers.base import PaymentState
from portal.money.payments.providers.base import RefundState as ProviderRefundState
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, TransactionType
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import wallet_of
from tests.money.payments.helpers import key, paid_course, student, succeeded_top_up, top_up


def age(payment: Payment, minutes: int) -> None:
    db.session.execute(update(Payment).where(Payment.id == payment.id)
                       .values(updated_at=utcnow() - timedelta(minutes=minutes)))
    db.session.refresh(payment)


def report_for(user, **kwargs) -> reconcile.Report:
    return reconcile.reconcile(user_id=user.id, **kwargs)


# -- The job --------------------------------------------------------------------------------------


def test_the_job_applies_what_the_provider_says_about_a_stuck_payment(fake, app):
    user = student()
    payment = top_up(user, "35", kind="mobile_money")
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)  # the webhook never came
    age(payment, app.config["PAYMENT_STUCK_MINUTES"] + 1)
    counts = tasks.sweep(limit=1000)
    assert counts["payments_changed"] >= 1
    assert payment.state == PaymentState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("35")
    age(payment, app.config["PAYMENT_STUCK_MINUTES"] + 1)
    tasks.sweep(limit=1000)
    assert wallet_of(user).balance == Decimal("35")


def test_the_job_leaves_recent_payments_alone(fake):
    user = student()
    payment = top_up(user, "35")
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    tasks.sweep(limit=1000)
    assert payment.state == PaymentState.REQUIRES_ACTION


def test_the_job_sends_a_payment_the_provider_never_got(fake):
    user = student()
    fake.down = True
    payment = top_up(user, "35")
    fake.down = False
    tasks.sweep(limit=1000)
    assert payment.provider_ref is not None and payment.state == PaymentState.REQUIRES_ACTION


def test_the_job_survives_a_provider_that_is_down(fake, app):
    user = student()
    payment = top_up(user, "35")
    age(payment, app.config["PAYMENT_STUCK_MINUTES"] + 1)
    fake.down = True
    counts = tasks.sweep(limit=1000)
    assert counts["errors"] >= 1 and payment.state == PaymentState.REQUIRES_ACTION


def test_the_job_cancels_payments_abandoned_for_a_day(fake, app):
    user = student()
    payment = top_up(user, "35")
    db.session.execute(update(Payment).where(Payment.id == payment.id)
                       .values(created_at=utcnow() - timedelta(days=2), updated_at=utcnow() - timedelta(days=2)))
    db.session.refresh(payment)
    tasks.sweep(limit=1000)
    assert payment.state == PaymentState.CANCELED
    assert wallet_of(user).balance == 0


def test_the_job_settles_pending_refunds(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50")
    refund = services.refund_payment(create_user("admin"), payment, "20", "Asked")
    fake.settle_refund(refund.provider_ref, ProviderRefundState.SUCCEEDED)
    counts = tasks.sweep(limit=1000)
    assert counts["refunds_settled"] >= 1
    assert refund.state == RefundState.SUCCEEDED
    assert wallet_of(user).balance == Decimal("30")


def test_the_job_is_registered_with_the_queue():
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    assert "portal.money.payments.tasks.poll_stuck_payments" in job_app.tasks


# -- Reconciliation -------------------------------------------------------------------------------


def test_everything_in_order_reports_no_difference(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50")
    refund = services.refund_payment(create_user("admin"), payment, "10", "Asked")
    services.apply_provider_refund(fake.settle_refund(refund.provider_ref), provider="sandbox", source="webhook")
    failed = top_up(user, "20")
    services.apply_provider_payment(fake.complete(failed.provider_ref, PaymentState.FAILED), provider="sandbox",
                                    source="webhook")
    course = paid_course("19.00")
    with as_user(user):
        services.pay_course(user, course, idempotency_key=key(), from_wallet=True)
    report = report_for(user)
    assert report.ok, report.differences
    assert (report.payments, report.refunds) == (3, 1)


def test_a_payment_the_provider_settled_but_the_portal_did_not_hear_about(fake):
    user = student()
    payment = top_up(user, "50")
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    report = report_for(user)
    assert [(d.kind, d.payment_id) for d in report.differences] == [("provider", payment.id)]
    assert "succeeded" in report.differences[0].message
    fixed = report_for(user, fix=True)
    assert fixed.ok and fixed.fixed == 1
    assert wallet_of(user).balance == Decimal("50")


def test_a_succeeded_payment_credited_twice_is_listed(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50")
    with ledger.as_ledger():
        clearing = ledger.system_wallet(SystemWallet.CLEARING_SANDBOX, "USD")
        ledger.post([ledger.Leg(clearing, wallet_of(user), Decimal("50"), TransactionType.TOP_UP, "Again",
                                {"payment_id": str(payment.id)})])
    report = report_for(user)
    assert [d.kind for d in report.differences] == ["ledger"]
    assert "2 top-up rows" in report.differences[0].message


def test_money_credited_for_a_failed_payment_is_listed(fake):
    user = student()
    payment = top_up(user, "50")
    services.apply_provider_payment(fake.complete(payment.provider_ref, PaymentState.FAILED), provider="sandbox",
                                    source="webhook")
    with ledger.as_ledger():
        clearing = ledger.system_wallet(SystemWallet.CLEARING_SANDBOX, "USD")
        wallet = ledger.open_user_wallet(user.id, "USD")
        ledger.post([ledger.Leg(clearing, wallet, Decimal("50"), TransactionType.TOP_UP, "Wrong",
                                {"payment_id": str(payment.id)})])
    report = report_for(user)
    assert [d.kind for d in report.differences] == ["ledger"]
    assert "failed" in report.differences[0].message


def test_a_wrong_fee_on_the_ledger_is_listed(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50")
    payment.fee = payment.fee + Decimal("1")
    db.session.flush()
    kinds = {d.kind for d in report_for(user).differences}
    assert "ledger" in kinds and "provider" in kinds


def test_a_refund_the_provider_settled_unheard_is_listed_and_fixed(fake):
    user = student()
    payment = succeeded_top_up(fake, user, "50")
    refund = services.refund_payment(create_user("admin"), payment, "10", "Asked")
    fake.settle_refund(refund.provider_ref, ProviderRefundState.SUCCEEDED)
    kinds = sorted(d.kind for d in report_for(user).differences)
    assert kinds == ["provider", "refund"]  # refunded amount, and the refund's state
    assert report_for(user, fix=True).ok
    assert refund.state == RefundState.SUCCEEDED


def test_the_command_exits_1_on_differences(fake, app):
    from portal.money.payments.cli import reconcile_command

    user = student()
    payment = top_up(user, "50")
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    original = reconcile.reconcile

    def only_this_user(**kwargs):
        return original(user_id=user.id, **kwargs)

    import portal.money.payments.reconcile as module

    runner = app.test_cli_runner()
    try:
        module.reconcile = only_this_user
        result = runner.invoke(reconcile_command, [])
    finally:
        module.reconcile = original
    assert result.exit_code == 1, result.output
    assert "1 difference(s)" in result.output and str(payment.id) in result.output


def test_the_command_is_registered(app):
    assert "reconcile" in app.cli.commands["payments"].commands


def test_the_command_says_so_when_everything_matches(fake, app, monkeypatch):
    from portal.money.payments.cli import reconcile_command

    user = student()
    succeeded_top_up(fake, user, "10")
    original = reconcile.reconcile
    monkeypatch.setattr(reconcile, "reconcile", lambda **kwargs: original(user_id=user.id, **kwargs))
    result = app.test_cli_runner().invoke(reconcile_command, ["--days", "1"])
    assert result.exit_code == 0, result.output
    assert "Checked 1 payments and 0 refunds." in result.output


def test_a_run_is_recorded_for_the_reconciliation_page(fake, monkeypatch):
    user = student()
    payment = top_up(user, "50")
    fake.complete(payment.provider_ref, PaymentState.SUCCEEDED)
    original = reconcile.reconcile
    monkeypatch.setattr(reconcile, "reconcile", lambda **kwargs: original(user_id=user.id, **kwargs))
    report = reconcile.reconcile_and_record("a test")
    last = reconcile.last_reconciliation()
    assert not report.ok and last is not None
    assert (last.ok, last.difference_count, last.payments, last.ran_by) == (False, 1, 1, "a test")
    assert last.differences[0]["payment_id"] == str(payment.id) and last.differences[0]["kind"] == "provider"
    reconcile.reconcile_and_record("a test", fix=True)
    assert reconcile.last_reconciliation().ok


def test_the_nightly_reconciliation_is_registered():
    from portal.platform.jobs import job_app

    job_app.perform_import_paths()
    assert "portal.money.payments.tasks.reconcile_nightly" in job_app.tasks
