"""The demo's plans: Free, Plus and Pro (USD, monthly), made once by the demo admin; a plan that
exists already (by code) is left as it is, so seeding again changes nothing and an admin's new
version stays."""

from __future__ import annotations

from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.money.billing import services
from portal.money.billing.models import Plan

#: (code, name, monthly price, trial days, description, entitlements)
DEMO_PLANS = (
    ("free", "Free", "0", 0, "Courses, quizzes and the wallet, with 20 questions a day to the tutor.",
     {"tutor_model": False, "tutor_questions_per_day": 20, "reward_multiplier": "1",
      "transfer_limit_multiplier": "1"}),
    ("plus", "Plus", "9.00", 14, "Unlimited tutor questions with the language model, and 25% more on rewards.",
     {"tutor_model": True, "tutor_questions_per_day": None, "reward_multiplier": "1.25",
      "transfer_limit_multiplier": "1.5"}),
    ("pro", "Pro", "19.00", 0, "Everything in Plus, twice the transfer limit and 50% more on rewards.",
     {"tutor_model": True, "tutor_questions_per_day": None, "reward_multiplier": "1.5",
      "transfer_limit_multiplier": "2"}),
)


def seed_plans(admin: User) -> int:
    """Create the demo plans that are missing; returns how many were created."""
    existing = set(db.session.scalars(select(Plan.code).where(Plan.code.in_([p[0] for p in DEMO_PLANS]))))
    created = 0
    for position, (code, name, price, trial, description, features) in enumerate(DEMO_PLANS):
        if code in existing:
            continue
        services.create_plan(admin, code, services.PlanInput(name=name, price=price, currency="USD",
                                                             interval="monthly", trial_days=trial,
                                                             entitlements=features, description=description,
                                                             position=position))
        created += 1
    return created
