"""The demo's plans: Free, Plus and Pro, seeded once by the demo's money seeding."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from portal import demo
from portal.db import db
from portal.money.billing import entitlements, services
from portal.money.billing.demo import seed_plans
from portal.money.billing.models import Plan
from tests.factories import create_user


def test_seeding_makes_free_plus_and_pro_once():
    admin = create_user("admin")
    first = seed_plans(admin)
    again = seed_plans(admin)
    assert again == 0 and first <= 3
    plans = {p.code: p for p in db.session.scalars(select(Plan).where(Plan.code.in_(["free", "plus", "pro"])))}
    assert [(plans[c].name, plans[c].price) for c in ("free", "plus", "pro")] == [
        ("Free", Decimal("0")), ("Plus", Decimal("9.00")), ("Pro", Decimal("19.00"))]
    assert plans["plus"].trial_days == 14
    user = create_user("student")
    entitlements.forget()
    assert entitlements.limit(user.id, "tutor_questions_per_day") == 20
    assert not entitlements.may(user.id, "tutor_model")


def test_the_demo_money_seeding_seeds_the_plans():
    admin = db.session.scalar(select(demo.User).where(demo.User.email == "admin@azora.example"))
    if admin is None:
        create_user("admin", email="admin@azora.example")
    demo._seed_money()
    demo._seed_money()
    assert db.session.scalar(select(func.count()).select_from(Plan).where(Plan.code.in_(["free", "plus", "pro"]))) == 3
    assert services.active_plan("pro").price == Decimal("19.00")
