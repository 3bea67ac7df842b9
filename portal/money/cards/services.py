"""Issuing and managing virtual cards: what students do with their cards and what staff may do
to anyone's. Every function takes the acting user, validates, changes rows and flushes; the
caller commits.

- ``issue_card``: identity level 2 or higher, the wallet active, at most
  ``CARD_MAX_LIVE_PER_USER`` live (active or frozen) cards per user.
- ``reveal``: the full number, expiry and security code, only after the password was entered
  again; after ``REVEAL_ATTEMPTS`` wrong passwords (``count_wrong_reveal``) reveals pause for the
  window. What it returns is never written anywhere: not to the database, the audit trail or a
  log. The security code is derived on the spot (``portal.money.cards.pan``).
- ``freeze`` / ``unfreeze``: the owner or staff (admins, compliance officers); staff give a
  reason, and a card frozen by staff (or by the security-code lockout) is unfrozen only by staff.
- ``cancel``: for good. ``replace``: a new number on the same wallet with the same controls;
  the old card stops at once (state ``replaced``).
- ``set_controls``: per-purchase, daily and monthly limits in the wallet's currency, blocked
  merchant-category groups and countries; field errors name the form field.

States and their transitions are in ``models.CARD_TRANSITIONS``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date

from flask import current_app
from sqlalchemy import func, select, text

from portal.accounts import services as accounts
from portal.accounts.models import User
from portal.compliance.kyc import queries as kyc
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden, NotFound, Throttled
from portal.money.cards import codes, pan
from portal.money.cards.models import (
    LIVE_STATES,
    CardState,
    VirtualCard,
    check_transition,
)
from portal.money.currency import UnknownCurrency, currency, parse_amount
from portal.money.wallets import ledger
from portal.money.wallets.models import WalletStatus
from portal.platform.gateway import services as rate_limits
from portal.security.permissions import Permission, has_permission

#: The identity-verification level a card needs (an identity document: level 2).
CARD_LEVEL = 2
#: Most countries one card may block (the whole list is a canceled card, in effect).
MAX_BLOCKED_COUNTRIES = 60
#: Wrong passwords on a reveal a user may give in ``REVEAL_WINDOW_SECONDS`` before reveals pause.
REVEAL_ATTEMPTS = 5
REVEAL_WINDOW_SECONDS = 15 * 60
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class CardError(DomainError):
    status_code = 422


class InvalidControls(CardError):
    """Spending controls refused: ``errors`` maps each form field to its message."""

    def __init__(self, errors: dict[str, str]):
        field, message = next(iter(errors.items()))
        super().__init__(message, field=field)
        self.errors = errors


@dataclass(frozen=True)
class RevealedCard:
    """What a reveal shows, for a short time, to the card's owner. Never stored or logged:
    ``repr`` leaves the number and code out, so an error report cannot carry them."""

    card_id: uuid.UUID
    number: str
    security_code: str
    exp_month: int
    exp_year: int

    def __repr__(self) -> str:
        return f"RevealedCard(card_id={self.card_id}, number=<hidden>, security_code=<hidden>)"

    __str__ = __repr__

    @property
    def grouped_number(self) -> str:
        return " ".join(self.number[i:i + 4] for i in range(0, len(self.number), 4))


# -- Who may --------------------------------------------------------------------------------------


def is_staff(user: User) -> bool:
    return has_permission(user.role, Permission.MANAGE_MONEY) or \
        has_permission(user.role, Permission.REVIEW_COMPLIANCE)


def get_card(actor: User, card_id: uuid.UUID, *, for_update: bool = False) -> VirtualCard:
    """The card, if ``actor`` owns it or is staff; otherwise NotFound (whether it exists is not
    said to others)."""
    query = select(VirtualCard).where(VirtualCard.id == card_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    card = db.session.scalar(query)
    if card is None or (card.user_id != actor.id and not is_staff(actor)):
        raise NotFound("There is no such card.")
    return card


def _owner_only(actor: User, card: VirtualCard, what: str) -> None:
    if card.user_id != actor.id:
        raise Forbidden(f"Only the card's holder may {what}.")


# -- Issuing --------------------------------------------------------------------------------------


def _lock_user_cards(user_id: uuid.UUID) -> None:
    """Serialise issuing for one user (two tabs at once), so the live-card limit holds."""
    key = uuid.UUID(str(user_id)).int & 0x7FFF_FFFF_FFFF_FFFF
    db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _expiry(today: date, years: int) -> tuple[int, int]:
    return today.month, today.year + years


def _new_card(user_id: uuid.UUID, wallet, *, nickname: str = "", controls_from: VirtualCard | None = None) -> VirtualCard:
    bin_ = pan.configured_bin()
    for _attempt in range(10):
        number = pan.new_number(bin_)
        lookup = pan.lookup_hash(number)
        if db.session.scalar(select(func.count()).select_from(VirtualCard).where(VirtualCard.pan_lookup == lookup)) == 0:
            break
    else:  # pragma: no cover - 10^9 numbers per BIN: ten collisions in a row mean a broken generator
        raise CardError("No new card number could be made; try again.")
    exp_month, exp_year = _expiry(utcnow().date(), int(current_app.config.get("CARD_VALID_YEARS", 3)))
    card_id = uuid.uuid4()
    sealed, key_id = pan.seal(card_id, number)
    card = VirtualCard(id=card_id, user_id=user_id, wallet_id=wallet.id, currency=wallet.currency,
                       state=CardState.ACTIVE, brand=pan.brand_of(number), bin=number[:6], last4=number[-4:],
                       exp_month=exp_month, exp_year=exp_year, pan_encrypted=sealed, pan_key_id=key_id,
                       pan_lookup=lookup, nickname=nickname[:60], wrong_cvv_count=0,
                       blocked_mcc_groups=list(controls_from.blocked_mcc_groups) if controls_from else [],
                       blocked_countries=list(controls_from.blocked_countries) if controls_from else [],
                       per_purchase_limit=controls_from.per_purchase_limit if controls_from else None,
                       daily_limit=controls_from.daily_limit if controls_from else None,
                       monthly_limit=controls_from.monthly_limit if controls_from else None)
    db.session.add(card)
    db.session.flush()
    return card


def issue_card(user: User, currency_code: str, *, nickname: str = "") -> VirtualCard:
    """A new active card on ``user``'s wallet in ``currency_code``."""
    if not has_permission(user.role, Permission.USE_WALLET):
        raise Forbidden("Only students hold cards.")
    try:
        code = currency(currency_code).code
    except UnknownCurrency as exc:
        raise CardError(exc.message, field="currency") from exc
    level = kyc.effective_level(user.id)
    if level < CARD_LEVEL:
        raise CardError(f"A card needs identity verification level {CARD_LEVEL} (an identity document); your "
                        f"level is {level}. Verify your identity at /wallet/verification first.", field="currency")
    wallet = ledger.user_wallet(user.id, code)
    if wallet is None:
        wallet = ledger.open_user_wallet(user.id, code)
    if wallet.status != WalletStatus.ACTIVE:
        raise CardError(f"Your {code} wallet is {wallet.status.value}: it cannot have a new card.", field="currency")
    _lock_user_cards(user.id)
    limit = int(current_app.config.get("CARD_MAX_LIVE_PER_USER", 3))
    live = db.session.scalar(select(func.count()).select_from(VirtualCard)
                             .where(VirtualCard.user_id == user.id, VirtualCard.state.in_(LIVE_STATES)))
    if live >= limit:
        raise CardError(f"You have {live} cards already, the most one person may hold; cancel one first.",
                        field="currency")
    return _new_card(user.id, wallet, nickname=nickname.strip())


# -- Reveal ---------------------------------------------------------------------------------------


def reveal(user: User, card_id: uuid.UUID, password: str | None) -> RevealedCard:
    """The full number and security code of ``user``'s own live card, once the password is right."""
    card = get_card(user, card_id)
    _owner_only(user, card, "see its number")
    window = rate_limits.peek(_reveal_key(user.id), REVEAL_WINDOW_SECONDS)
    if window is not None and window.count >= REVEAL_ATTEMPTS:
        minutes = max(1, round(window.retry_after / 60))
        raise Throttled(f"Too many wrong passwords: card details can be shown again in {minutes} minute"
                        f"{'s' if minutes != 1 else ''}.", retry_after=window.retry_after)
    accounts.confirm_password(user, password)
    if not card.live:
        raise CardError(f"This card is {card.state.value}: its number no longer works.")
    number = pan.unseal(card.id, card.pan_encrypted)
    return RevealedCard(card_id=card.id, number=number,
                        security_code=pan.security_code(number, card.exp_month, card.exp_year),
                        exp_month=card.exp_month, exp_year=card.exp_year)


def _reveal_key(user_id: uuid.UUID) -> str:
    return f"card-reveal:{user_id}"


def count_wrong_reveal(user: User) -> int:
    """Count a wrong password given to ``reveal`` (the caller rolls the reveal back, counts,
    then commits the count); returns the count in the window."""
    return rate_limits.hit(_reveal_key(user.id), REVEAL_WINDOW_SECONDS).count


# -- State ----------------------------------------------------------------------------------------


def _clean_reason(reason: str | None, *, required: bool) -> str:
    cleaned = " ".join((reason or "").split())[:300]
    if required and not cleaned:
        raise CardError("Give a reason: the holder and the audit trail will see it.", field="reason")
    return cleaned


def freeze(actor: User, card_id: uuid.UUID, reason: str | None = None) -> VirtualCard:
    """Freeze a card: every authorization is declined until it is unfrozen. Staff give a reason."""
    card = get_card(actor, card_id, for_update=True)
    staff = card.user_id != actor.id
    cleaned = _clean_reason(reason, required=staff) or "Frozen by the card holder"
    if card.state == CardState.FROZEN:
        return card
    check_transition(card.state, CardState.FROZEN)
    card.state = CardState.FROZEN
    card.frozen_reason = cleaned
    card.frozen_by_id = actor.id
    card.frozen_by_staff = staff
    db.session.flush()
    return card


def freeze_for_security(card: VirtualCard, reason: str) -> None:
    """Freeze a card the portal itself stopped (too many wrong security codes): only staff may
    unfreeze it. ``card`` is locked by the caller."""
    if card.state != CardState.ACTIVE:
        return
    card.state = CardState.FROZEN
    card.frozen_reason = reason[:300]
    card.frozen_by_id = None
    card.frozen_by_staff = True


def unfreeze(actor: User, card_id: uuid.UUID) -> VirtualCard:
    card = get_card(actor, card_id, for_update=True)
    if card.state != CardState.FROZEN:
        raise CardError(f"This card is {card.state.value}, not frozen.")
    if card.frozen_by_staff and not is_staff(actor):
        raise Forbidden("This card was frozen by the portal's staff or for security; ask support to unfreeze it.")
    check_transition(card.state, CardState.ACTIVE)
    card.state = CardState.ACTIVE
    card.frozen_reason = None
    card.frozen_by_id = None
    card.frozen_by_staff = False
    card.wrong_cvv_count = 0
    db.session.flush()
    return card


def _end(card: VirtualCard, state: CardState) -> None:
    check_transition(card.state, state)
    card.state = state
    card.frozen_reason = None
    card.frozen_by_staff = False
    card.canceled_at = utcnow()


def cancel(actor: User, card_id: uuid.UUID, reason: str | None = None) -> VirtualCard:
    """Cancel for good: the number is declined from now on. Holds already placed stay until
    captured, reversed or expired, as merchants may still clear them."""
    card = get_card(actor, card_id, for_update=True)
    _clean_reason(reason, required=card.user_id != actor.id)
    _end(card, CardState.CANCELED)
    db.session.flush()
    return card


def replace(actor: User, card_id: uuid.UUID) -> VirtualCard:
    """A new number for the card's holder on the same wallet, with the same controls; the old
    card stops at once. Returns the new card."""
    card = get_card(actor, card_id, for_update=True)
    _owner_only(actor, card, "replace it")
    if not card.live:
        raise CardError(f"A {card.state.value} card cannot be replaced.")
    if card.frozen_by_staff:
        raise Forbidden("This card was frozen by the portal's staff or for security; ask support first.")
    wallet = ledger.user_wallet(card.user_id, card.currency)
    if wallet is None or wallet.status != WalletStatus.ACTIVE:
        raise CardError(f"Your {card.currency} wallet is not active: the card cannot be replaced now.")
    _end(card, CardState.REPLACED)
    db.session.flush()
    new = _new_card(card.user_id, wallet, nickname=card.nickname, controls_from=card)
    card.replaced_by_id = new.id
    db.session.flush()
    return new


# -- Controls -------------------------------------------------------------------------------------


def _limit(raw, code: str, field: str, label: str, errors: dict[str, str]):
    text_value = str(raw or "").strip()
    if not text_value:
        return None
    try:
        return parse_amount(text_value, code)
    except DomainError as exc:
        errors[field] = f"{label}: {exc.message}"
        return None


def validate_controls(code: str, *, per_purchase_limit=None, daily_limit=None, monthly_limit=None,
                      blocked_mcc_groups=(), blocked_countries=()) -> dict:
    """The controls from a form (text values), checked; raises ``InvalidControls`` with every
    field's message."""
    errors: dict[str, str] = {}
    per = _limit(per_purchase_limit, code, "per_purchase_limit", "Per-purchase limit", errors)
    daily = _limit(daily_limit, code, "daily_limit", "Daily limit", errors)
    monthly = _limit(monthly_limit, code, "monthly_limit", "Monthly limit", errors)
    if per is not None and daily is not None and per > daily and "per_purchase_limit" not in errors:
        errors["per_purchase_limit"] = "The per-purchase limit cannot be above the daily limit."
    if daily is not None and monthly is not None and daily > monthly and "daily_limit" not in errors:
        errors["daily_limit"] = "The daily limit cannot be above the monthly limit."
    groups = []
    for name in blocked_mcc_groups or ():
        name = str(name).strip()
        if name not in codes.MCC_GROUPS:
            errors["blocked_mcc_groups"] = f"There is no merchant category group named {name[:30]!r}."
            break
        if name not in groups:
            groups.append(name)
    countries = []
    raw_countries = blocked_countries.split(",") if isinstance(blocked_countries, str) else (blocked_countries or ())
    for raw in raw_countries:
        country = str(raw).strip().upper()
        if not country:
            continue
        if not _COUNTRY.match(country):
            errors["blocked_countries"] = (f"{str(raw).strip()[:10]!r} is not a country code: use two letters "
                                           "(ISO 3166), such as US or GB.")
            break
        if country not in countries:
            countries.append(country)
    if len(countries) > MAX_BLOCKED_COUNTRIES:
        errors["blocked_countries"] = f"Block at most {MAX_BLOCKED_COUNTRIES} countries."
    if errors:
        raise InvalidControls(errors)
    return {"per_purchase_limit": per, "daily_limit": daily, "monthly_limit": monthly,
            "blocked_mcc_groups": groups, "blocked_countries": sorted(countries)}


def set_controls(actor: User, card_id: uuid.UUID, **raw) -> VirtualCard:
    """Replace the card's spending controls (its holder, or staff)."""
    card = get_card(actor, card_id, for_update=True)
    if not card.live:
        raise CardError(f"A {card.state.value} card has no controls to change.")
    values = validate_controls(card.currency, **raw)
    for name, value in values.items():
        setattr(card, name, value)
    db.session.flush()
    return card


# -- Keys -----------------------------------------------------------------------------------------


def rotate_keys(batch: int = 500) -> tuple[int, int]:
    """Re-encrypt every card number not under the first key of ``CARD_DATA_KEYS``; returns
    ``(re-encrypted, cards in all)``. Run as a system actor (every card)."""
    current = pan.cipher().current_key_id
    total = db.session.scalar(select(func.count()).select_from(VirtualCard)) or 0
    done = 0
    while True:
        cards = db.session.scalars(select(VirtualCard).where(VirtualCard.pan_key_id != current)
                                   .order_by(VirtualCard.id).limit(batch).with_for_update()).all()
        if not cards:
            break
        for card in cards:
            number = pan.unseal(card.id, card.pan_encrypted)
            card.pan_encrypted, card.pan_key_id = pan.seal(card.id, number)
            done += 1
        db.session.flush()
    return done, total
