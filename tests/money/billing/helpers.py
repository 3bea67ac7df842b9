"""Shared set-up of the billing tests: plans, funded students, acting as a user."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.money.billing import services
from portal.money.billing.models import Plan
from portal.money.wallets import ledger
from portal.money.wallets.models import SystemWallet, TransactionType
from tests.factories import create_user


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def plans(suffix: str = "", *, with_free: bool = True) -> dict[str, Plan]:
    """Free, Plus (10.00 USD a month, 14 trial days) and Pro (25.00 USD a month), plus Pro
    Yearly (250.00 USD a year); codes suffixed so tests never meet the demo's plans."""
    admin = create_user("admin")
    made = {}
    for code, name, price, interval, trial, features in (
        ("free", "Free", "0", "monthly", 0, {"tutor_questions_per_day": 3, "tutor_model": False}),
        ("plus" + suffix, "Plus", "10.00", "monthly", 14, {"tutor_questions_per_day": None, "tutor_model": True,
                                                          "reward_multiplier": "1.5"}),
        ("pro" + suffix, "Pro", "25.00", "monthly", 0, {"tutor_questions_per_day": None, "tutor_model": True,
                                                       "reward_multiplier": "2"}),
        ("proyear" + suffix, "Pro Yearly", "250.00", "yearly", 0, {"tutor_model": True}),
    ):
        if code == "free" and not with_free:
            continue
        existing = services.active_plan(code)
        if existing is not None:
            made[code.removesuffix(suffix) if suffix else code] = existing
            continue
        made[code.removesuffix(suffix) if suffix else code] = services.create_plan(
            admin, code, services.PlanInput(name=name, price=price, interval=interval, trial_days=trial,
                                            entitlements=features))
    return made


def fund(user, amount: str, code: str = "USD") -> None:
    wallet = ledger.open_user_wallet(user.id, code)
    deposits = ledger.system_wallet(SystemWallet.DEPOSITS, code)
    ledger.post([ledger.Leg(deposits, wallet, Decimal(amount), TransactionType.DEPOSIT, "Test deposit")])


def balance(user, code: str = "USD") -> Decimal:
    with ledger.as_ledger():
        wallet = ledger.user_wallet(user.id, code)
        db.session.refresh(wallet) if wallet is not None else None
        return wallet.balance if wallet is not None else Decimal(0)


@contextmanager
def as_user(user):
    with acting_as(Actor.for_user(user.id, user.role.value), db.session):
        yield


def student(funds: str | None = None):
    user = create_user("student")
    if funds:
        fund(user, funds)
    return user
