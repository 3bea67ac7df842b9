"""Conversions: the quote's exact numbers, accepting through one ledger posting, expiry, double
accept, someone else's quote, insufficient funds and frozen wallets. The services run as the
student (row-level security applies)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.errors import NotFound
from portal.money.exchange import services
from portal.money.exchange.models import Conversion, ConversionStatus, RateSource
from portal.money.exchange.services import ExchangeError, QuoteExpired, StaleRate
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import IdempotencyKey, Phase, SystemWallet, Transaction, TransactionType
from tests.helpers import as_user
from tests.money.factories.exchange import balance, freeze, fund, make_pair, make_rate, system_balance


@pytest.fixture
def market(make_user):
    """USD/AZR at 12.5 (fresh, HTTP), a 0.50 USD + 1% conversion fee, a student with 200 USD."""
    admin = make_user("admin")
    pair = make_pair("USD", "AZR")
    rate = make_rate(pair, "12.5", source=RateSource.HTTP, age_seconds=30)
    fees.save_rule(admin.id, "conversion", "USD", fixed="0.50", percent="1", minimum="0", maximum="")
    student = make_user("student")
    fund(student, "USD", "200.00")
    return student, pair, rate


def legs_of(group_id) -> list[Transaction]:
    with ledger.as_ledger():
        return list(db.session.scalars(select(Transaction).where(Transaction.group_id == group_id)
                                       .order_by(Transaction.type, Transaction.currency)))


def test_quote_has_exact_amounts_fee_rate_source_and_expiry(market, app):
    student, _, rate = market
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "100.00")
    assert quote.status == ConversionStatus.QUOTED
    assert (quote.from_amount, quote.fee_amount, quote.to_amount) == (Decimal("100.00"), Decimal("1.50"),
                                                                      Decimal("1250.00000000"))
    assert quote.rate == Decimal("12.5") and quote.rate_id == rate.id and quote.rate_source == "http"
    assert quote.expires_at - quote.quoted_at == timedelta(seconds=app.config["EXCHANGE_QUOTE_SECONDS"])
    assert balance(student, "USD") == Decimal("200.00")  # a quote moves nothing


def test_quote_in_the_inverse_direction_rounds_down(make_user):
    pair = make_pair("USD", "AZR")
    make_rate(pair, "3", source=RateSource.CSV)  # 1 AZR = 0.333333333333333333 USD
    student = make_user("student")
    fund(student, "AZR", "10")
    with as_user(student):
        quote = services.quote(student, "AZR", "USD", "10")
    assert quote.rate == Decimal("0.333333333333333333")
    assert quote.to_amount == Decimal("3.33") and quote.fee_amount == Decimal("0")


@pytest.mark.parametrize(("raw", "field", "message"), [
    ("-5", "amount", "positive"),
    ("0", "amount", "more than zero"),
    ("1.001", "amount", "2 decimal places"),
    ("abc", "amount", "as a number"),
])
def test_bad_amounts_are_refused(market, raw, field, message):
    student, _, _ = market
    with as_user(student), pytest.raises(Exception) as caught:
        services.quote(student, "USD", "AZR", raw)
    assert caught.value.field == field and message in caught.value.message


def test_other_refusals_of_a_quote(market, make_user):
    student, pair, _ = market
    with as_user(student):
        with pytest.raises(ExchangeError, match="two different"):
            services.quote(student, "USD", "USD", "1")
        with pytest.raises(ExchangeError, match="choose one of"):
            services.quote(student, "USD", "XYZ", "1")
        with pytest.raises(ExchangeError, match="no such pair"):
            services.quote(student, "BTC", "ETH", "1")
        with pytest.raises(ledger.InsufficientFunds, match=r"202\.52 needed \(200\.01 plus a 2\.51 fee\)"):
            services.quote(student, "USD", "AZR", "200.01")
        with pytest.raises(ExchangeError, match="too small"):
            make_pair("BTC", "USD")
            make_rate(services.find_pair("BTC", "USD")[0], "0.0001", source=RateSource.MANUAL)
            fund(student, "BTC", "1")
            services.quote(student, "BTC", "USD", "0.00000001")
    stale_pair = make_pair("ETH", "USD")
    make_rate(stale_pair, "3000", age_seconds=10_000)
    with as_user(student), pytest.raises(StaleRate, match="stale since"):
        services.quote(student, "USD", "ETH", "1")
    assert db.session.scalars(select(Conversion).where(Conversion.user_id == student.id)).all() == []


def test_accept_posts_three_legs_in_one_group_and_the_ledger_verifies(market):
    student, _, _ = market
    # System wallets are shared by the run (the browser journeys commit): compare what changed.
    before = {(w, c): system_balance(w, c) for w, c in ((SystemWallet.EXCHANGE, "USD"), (SystemWallet.EXCHANGE, "AZR"),
                                                          (SystemWallet.FEES, "USD"))}
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "100.00")
        done, replayed = services.accept(student, quote.id, ledger.new_key())
    assert not replayed and done.status == ConversionStatus.COMPLETED and done.completed_at is not None
    assert balance(student, "USD") == Decimal("98.50")
    assert balance(student, "AZR") == Decimal("1250")
    assert system_balance(SystemWallet.EXCHANGE, "USD") - before[SystemWallet.EXCHANGE, "USD"] == Decimal("100")
    assert system_balance(SystemWallet.EXCHANGE, "AZR") - before[SystemWallet.EXCHANGE, "AZR"] == Decimal("-1250")
    assert system_balance(SystemWallet.FEES, "USD") - before[SystemWallet.FEES, "USD"] == Decimal("1.50")
    legs = legs_of(done.transaction_group_id)
    described = sorted((t.type.value, t.currency, t.amount, t.debit_user_id, t.credit_user_id) for t in legs)
    assert described == sorted([
        ("conversion", "USD", Decimal("100.00"), student.id, None),
        ("conversion", "AZR", Decimal("1250.00000000"), None, student.id),
        ("fee", "USD", Decimal("1.50"), student.id, None),
    ])
    assert {t.phase for t in legs} == {Phase.SINGLE} and {t.initiated_by_id for t in legs} == {student.id}
    assert all(t.details["conversion"] == str(done.id) and t.details["rate"] == str(done.rate) for t in legs)
    # The line people read names the amounts as the pages write them, not at the column's scale.
    assert {t.description for t in legs if t.type.value == "conversion"} == {
        "Conversion of 100.00 USD into 1,250.00 AZR at 12.5"}
    assert ledger.verify().ok


def test_no_fee_means_no_fee_leg(make_user):
    pair = make_pair("USD", "AZR")
    make_rate(pair, "12.5", source=RateSource.HTTP)
    student = make_user("student")
    fund(student, "AZR", "100")
    with as_user(student):
        quote = services.quote(student, "AZR", "USD", "100")
        done, _ = services.accept(student, quote.id, ledger.new_key())
    assert done.to_amount == Decimal("8.00") and done.fee_amount == 0
    assert [t.type for t in legs_of(done.transaction_group_id)] == [TransactionType.CONVERSION] * 2
    assert balance(student, "USD") == Decimal("8.00") and ledger.verify().ok


def test_double_accept_pays_once_with_the_same_key_or_another(market):
    student, _, _ = market
    key = ledger.new_key()
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "100.00")
        services.accept(student, quote.id, key)
        again, replayed = services.accept(student, quote.id, key)
        other, replayed_other = services.accept(student, quote.id, ledger.new_key())
    assert replayed and replayed_other and again.id == other.id == quote.id
    assert balance(student, "USD") == Decimal("98.50") and balance(student, "AZR") == Decimal("1250")
    assert len(legs_of(quote.transaction_group_id)) == 3
    assert ledger.verify().ok


def test_a_key_used_for_one_quote_is_refused_for_another(market):
    student, _, _ = market
    key = ledger.new_key()
    with as_user(student):
        first = services.quote(student, "USD", "AZR", "10.00")
        second = services.quote(student, "USD", "AZR", "20.00")
        services.accept(student, first.id, key)
        with pytest.raises(ledger.IdempotencyMismatch):
            services.accept(student, second.id, key)
    assert balance(student, "USD") == Decimal("200.00") - Decimal("10.60")


def test_an_expired_quote_is_marked_and_refused_and_moves_nothing(market):
    student, _, _ = market
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "100.00")
        # Freeze time by moving the quote into the past rather than sleeping.
        quote.quoted_at -= timedelta(minutes=5)
        quote.expires_at = quote.quoted_at + timedelta(seconds=30)
        db.session.flush()
        key = ledger.new_key()
        with pytest.raises(QuoteExpired) as caught:
            services.accept(student, quote.id, key)
    assert caught.value.conversion.id == quote.id and "expired" in caught.value.message
    assert quote.status == ConversionStatus.EXPIRED and quote.completed_at is None
    assert balance(student, "USD") == Decimal("200.00") and balance(student, "AZR") == Decimal(0)
    # The key was not spent: nothing ran under it.
    assert db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key)) is None
    with as_user(student), pytest.raises(QuoteExpired):
        services.accept(student, quote.id, ledger.new_key())


def test_the_expiry_instant_itself_is_too_late(market):
    student, _, _ = market
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "1.00")
        with pytest.raises(QuoteExpired):
            services.accept(student, quote.id, ledger.new_key(), now=quote.expires_at)


def test_someone_elses_quote_is_not_found(market, make_user):
    student, _, _ = market
    other = make_user("student")
    fund(other, "USD", "500")
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "100.00")
    with as_user(other):
        with pytest.raises(NotFound):
            services.accept(other, quote.id, ledger.new_key())
        with pytest.raises(NotFound):
            services.conversion_of(other, quote.id)
        # Row-level security hides the row itself, not only the service's check.
        assert db.session.scalars(select(Conversion).where(Conversion.id == quote.id)).all() == []
        with pytest.raises(NotFound):
            services.accept(other, uuid.uuid4(), ledger.new_key())
    assert balance(other, "USD") == Decimal("500") and quote.status == ConversionStatus.QUOTED


def test_insufficient_funds_at_accept_moves_nothing(market):
    student, _, _ = market
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "150.00")
        spend = services.quote(student, "USD", "AZR", "100.00")
        services.accept(student, spend.id, ledger.new_key())
        with pytest.raises(ledger.InsufficientFunds):
            services.accept(student, quote.id, ledger.new_key())
    assert quote.status == ConversionStatus.QUOTED


@pytest.mark.parametrize("code", ["USD", "AZR"])
def test_frozen_wallets_refuse_at_accept(market, code):
    student, _, _ = market
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "10.00")
    freeze(student, code)
    with as_user(student), pytest.raises(ledger.WalletUnavailable) as caught:
        services.accept(student, quote.id, ledger.new_key())
    assert f"Your {code} wallet is frozen" in caught.value.message
    assert balance(student, "USD") == Decimal("200.00")


def test_a_frozen_source_wallet_refuses_the_quote_too(market):
    student, _, _ = market
    freeze(student, "USD")
    with as_user(student), pytest.raises(ledger.WalletUnavailable, match="frozen"):
        services.quote(student, "USD", "AZR", "10.00")


def test_accept_uses_the_stored_quote_even_after_the_rate_moves(market):
    student, pair, _ = market
    with as_user(student):
        quote = services.quote(student, "USD", "AZR", "100.00")
    make_rate(pair, "99", source=RateSource.HTTP, age_seconds=1)
    with as_user(student):
        done, _ = services.accept(student, quote.id, ledger.new_key())
    assert done.to_amount == Decimal("1250") and balance(student, "AZR") == Decimal("1250")


def test_status_transitions_are_enforced():
    conversion = Conversion(status=ConversionStatus.COMPLETED)
    with pytest.raises(Exception, match="cannot become"):
        services._move(conversion, ConversionStatus.EXPIRED)
