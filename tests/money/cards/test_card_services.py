"""Issuing and managing cards: the rules of each service, and how card data is kept."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.errors import Forbidden, NotFound
from portal.money.cards import pan, services
from portal.money.cards.models import CardState, CardStateError, VirtualCard
from portal.money.wallets import ledger
from portal.money.wallets.models import WalletStatus
from tests.factories import PASSWORD, create_user
from tests.money.cards.helpers import card_holder, issued


def test_issue_makes_an_active_card_with_a_luhn_valid_number_from_the_bin(app):
    user = card_holder()
    card, revealed = issued(user)
    assert card.state == CardState.ACTIVE and card.currency == "USD"
    assert len(revealed.number) == 16 and pan.luhn_valid(revealed.number)
    assert revealed.number.startswith(app.config["CARD_BIN"])
    assert card.bin == revealed.number[:6] and card.last4 == revealed.number[-4:]
    assert card.masked == f"{card.bin} •••••• {card.last4}"
    assert card.pan_lookup == pan.lookup_hash(revealed.number)
    assert revealed.number.encode() not in bytes(card.pan_encrypted)
    assert card.pan_key_id == pan.cipher().current_key_id


def test_luhn():
    assert pan.luhn_valid("4242424242424242")
    assert not pan.luhn_valid("4242424242424241")
    assert pan.luhn_check_digit("424242424242424") == "2"
    assert pan.normalise("4242 4242-4242 4242") == "4242424242424242"
    assert pan.normalise("4242424242424241") is None


def test_issue_needs_identity_level_two(app):
    user = card_holder(level=1)
    with pytest.raises(services.CardError, match="level 2"):
        services.issue_card(user, "USD")


def test_issue_refuses_a_frozen_wallet_and_an_unknown_currency(app):
    user = card_holder()
    with pytest.raises(services.CardError) as unknown:
        services.issue_card(user, "XYZ")
    assert unknown.value.field == "currency"
    with ledger.as_ledger():
        ledger.user_wallet(user.id, "USD").status = WalletStatus.FROZEN
        db.session.flush()
    with pytest.raises(services.CardError, match="frozen"):
        services.issue_card(user, "USD")


def test_live_cards_are_limited_per_user(app):
    user = card_holder()
    limit = app.config["CARD_MAX_LIVE_PER_USER"]
    cards = [services.issue_card(user, "USD") for _ in range(limit)]
    with pytest.raises(services.CardError, match="cancel one first"):
        services.issue_card(user, "USD")
    services.cancel(user, cards[0].id)
    services.issue_card(user, "USD")  # a canceled card does not count


def test_only_students_hold_cards(app):
    with pytest.raises(Forbidden):
        services.issue_card(create_user("faculty"), "USD")


def test_reveal_needs_the_password_and_derives_the_code(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    with pytest.raises(Exception, match="password is not right"):
        services.reveal(user, card.id, "wrong password")
    with pytest.raises(Exception, match="password is not right"):
        services.reveal(user, card.id, "")
    revealed = services.reveal(user, card.id, PASSWORD)
    assert revealed.security_code == pan.security_code(revealed.number, card.exp_month, card.exp_year)
    assert len(revealed.security_code) == 3 and revealed.security_code.isdigit()
    assert revealed.number not in repr(revealed) and revealed.security_code not in str(revealed).split("=")[-1]


def test_reveal_is_for_the_holder_only(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    with pytest.raises(NotFound):
        services.reveal(card_holder(), card.id, PASSWORD)
    with pytest.raises(Forbidden):
        services.reveal(create_user("admin"), card.id, PASSWORD)


def test_the_code_depends_on_the_key_number_and_expiry(app):
    code = pan.security_code("4242424242424242", 1, 2030)
    assert code == pan.security_code("4242424242424242", 1, 2030)
    others = {pan.security_code("4242424242424242", month, 2030) for month in range(1, 13)}
    assert len(others) > 3  # not a constant
    app.config["CARD_VERIFICATION_KEY"], saved = "another-verification-key-0123", app.config["CARD_VERIFICATION_KEY"]
    try:
        assert {pan.security_code("4242424242424242", m, 2030) for m in range(1, 13)} != others
    finally:
        app.config["CARD_VERIFICATION_KEY"] = saved


def test_freeze_and_unfreeze_by_the_holder(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    services.freeze(user, card.id)
    assert card.state == CardState.FROZEN and card.frozen_reason and not card.frozen_by_staff
    services.unfreeze(user, card.id)
    assert card.state == CardState.ACTIVE and card.frozen_reason is None


def test_staff_freeze_needs_a_reason_and_only_staff_unfreeze(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    officer = create_user("compliance")
    with pytest.raises(services.CardError) as missing:
        services.freeze(officer, card.id, "  ")
    assert missing.value.field == "reason"
    services.freeze(officer, card.id, "Reported stolen")
    assert card.frozen_by_staff and card.frozen_reason == "Reported stolen"
    with pytest.raises(Forbidden):
        services.unfreeze(user, card.id)
    services.unfreeze(create_user("admin"), card.id)
    assert card.state == CardState.ACTIVE


def test_other_students_cannot_touch_a_card(app):
    card = services.issue_card(card_holder(), "USD")
    stranger = card_holder()
    for action in (lambda: services.freeze(stranger, card.id), lambda: services.cancel(stranger, card.id),
                   lambda: services.set_controls(stranger, card.id, daily_limit="5")):
        with pytest.raises(NotFound):
            action()


def test_cancel_is_final(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    services.cancel(user, card.id)
    assert card.state == CardState.CANCELED and card.canceled_at is not None
    with pytest.raises(CardStateError):
        services.freeze(user, card.id)
    with pytest.raises(services.CardError):
        services.unfreeze(user, card.id)
    with pytest.raises(services.CardError):
        services.reveal(user, card.id, PASSWORD)


def test_replace_gives_a_new_number_and_keeps_the_controls(app):
    user = card_holder()
    card, old = issued(user)
    services.set_controls(user, card.id, daily_limit="50", blocked_mcc_groups=["gambling"], blocked_countries="ru, KP")
    new = services.replace(user, card.id)
    assert card.state == CardState.REPLACED and card.replaced_by_id == new.id
    fresh = services.reveal(user, new.id, PASSWORD)
    assert fresh.number != old.number
    assert new.daily_limit == Decimal("50") and new.blocked_mcc_groups == ["gambling"]
    assert new.blocked_countries == ["KP", "RU"]


def test_controls_are_validated_with_field_errors(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    with pytest.raises(services.InvalidControls) as caught:
        services.set_controls(user, card.id, per_purchase_limit="abc", daily_limit="10.001",
                              blocked_mcc_groups=["casinos"], blocked_countries="USA")
    assert set(caught.value.errors) == {"per_purchase_limit", "daily_limit", "blocked_mcc_groups", "blocked_countries"}
    with pytest.raises(services.InvalidControls) as order:
        services.set_controls(user, card.id, per_purchase_limit="100", daily_limit="50")
    assert order.value.field == "per_purchase_limit"
    with pytest.raises(services.InvalidControls) as negative:
        services.set_controls(user, card.id, monthly_limit="-5")
    assert negative.value.field == "monthly_limit"
    services.set_controls(user, card.id, per_purchase_limit="20", daily_limit="50", monthly_limit="500")
    assert (card.per_purchase_limit, card.daily_limit, card.monthly_limit) == (Decimal("20"), Decimal("50"),
                                                                              Decimal("500"))


def test_the_lookup_hash_is_unique(app):
    user = card_holder()
    card = services.issue_card(user, "USD")
    other = services.issue_card(user, "USD")
    other.pan_lookup = card.pan_lookup
    with pytest.raises(Exception, match="uq_virtual_cards_panLookup"):
        db.session.flush()


def test_ciphertext_is_bound_to_its_card(app):
    user = card_holder()
    card, revealed = issued(user)
    other = services.issue_card(user, "USD")
    with pytest.raises(Exception, match="authenticate"):
        pan.unseal(other.id, card.pan_encrypted)
    assert pan.unseal(card.id, card.pan_encrypted) == revealed.number
    assert db.session.scalar(select(VirtualCard.id).where(VirtualCard.pan_lookup == pan.lookup_hash(revealed.number)))
