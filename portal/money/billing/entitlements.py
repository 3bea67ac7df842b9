"""What a student's plan entitles them to: ``may(user_id, feature)`` and ``limit(user_id, feature)``.

Cheap enough for every page: one indexed statement (the live subscription by ``userId``, its
plan's JSONB entitlements, and the free plan's as the fallback, in one SELECT), then kept in the
database session's ``info`` for the rest of the request (a session lives for one request, job or
command); billing's writes forget the user's entry. A student asking about themselves reads with
their own role; anyone else (a teacher whose grading passed a student's quiz, a job) reads with
the ``billing`` role, so the student's plan is found whoever acts.

A past-due subscription keeps its entitlements while the dunning retries run; a student with no
live subscription has the ``free`` plan's. A key a plan does not set takes the ``DEFAULTS``,
which limit nothing: a portal that defines no plans works as it did before billing existed, and
the free plan (seeded by the demo) is where limits for non-paying students are set.
"""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal, InvalidOperation

from sqlalchemy import text

from portal.db import db
from portal.db.context import current_actor
from portal.money.billing.context import as_billing

#: The features a plan can grant, and their type: ``bool`` answers may/may not, ``int`` a count
#: (None: unlimited), ``Decimal`` a multiplier.
FEATURES: dict[str, type] = {
    "tutor_model": bool,  #: the tutor's optional language model rewords answers
    "tutor_questions_per_day": int,  #: questions to the tutor per UTC day (None: unlimited)
    "reward_multiplier": Decimal,  #: earnings rewards are multiplied by it
    "transfer_limit_multiplier": Decimal,  #: the daily transfer limits are multiplied by it
}

#: What a plan's missing keys fall back to (and everyone's, when no free plan exists): no limit.
DEFAULTS: dict[str, object] = {
    "tutor_model": True,
    "tutor_questions_per_day": None,
    "reward_multiplier": Decimal("1"),
    "transfer_limit_multiplier": Decimal("1"),
}

FREE_PLAN_CODE = "free"
_CACHE = "billing_entitlements"

_QUERY = text("""
    SELECT coalesce(
        (SELECT p.entitlements FROM subscriptions s JOIN plans p ON p.id = s."planId"
          WHERE s."userId" = :user_id AND s.status <> 'canceled' LIMIT 1),
        (SELECT p.entitlements FROM plans p WHERE p.code = :free AND p.status = 'active' LIMIT 1),
        '{}'::jsonb)
""")


class UnknownFeature(ValueError):
    """A feature name no plan can grant (a bug in the caller)."""


def clean(raw: dict | None) -> dict[str, object]:
    """A plan's entitlements checked and typed: unknown keys and bad values raise ValueError with
    a message for the plan form."""
    result: dict[str, object] = {}
    for key, value in (raw or {}).items():
        kind = FEATURES.get(key)
        if kind is None:
            raise ValueError(f"Unknown entitlement {key!r}: use {', '.join(FEATURES)}.")
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{key} is yes or no.")
            result[key] = value
        elif kind is int:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{key} is a whole number, 0 or more, or empty for unlimited.")
            result[key] = value
        else:
            try:
                number = Decimal(str(value))
            except (InvalidOperation, ValueError):
                raise ValueError(f"{key} is a number such as 1.5.") from None
            if not number.is_finite() or number < 1 or number > 100:
                raise ValueError(f"{key} is between 1 and 100.")
            result[key] = number
    return result


def to_json(entitlements: dict[str, object]) -> dict:
    """Entitlements as stored (multipliers as strings: JSON has no decimals)."""
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in entitlements.items()}


def of_user(user_id: uuid.UUID) -> dict[str, object]:
    """Every feature's value for ``user_id`` (one statement per user per session)."""
    cache = db.session.info.setdefault(_CACHE, {})
    if user_id not in cache:
        actor = current_actor()
        if actor is not None and actor.user_id == str(user_id):
            # The student asks about themselves: their own role reads their subscription (one
            # statement, no change of role).
            stored = db.session.execute(_QUERY, {"user_id": user_id, "free": FREE_PLAN_CODE}).scalar() or {}
        else:
            with as_billing():
                stored = db.session.execute(_QUERY, {"user_id": user_id, "free": FREE_PLAN_CODE}).scalar() or {}
        values = dict(DEFAULTS)
        # A plan edited by hand in the database into a bad value: its defaults, not a broken page.
        with contextlib.suppress(ValueError):
            values.update(clean({k: v for k, v in stored.items() if k in FEATURES}))
        cache[user_id] = values
    return cache[user_id]


def forget(user_id: uuid.UUID | None = None) -> None:
    """Drop what ``of_user`` remembered (after a subscription or plan changed)."""
    cache = db.session.info.get(_CACHE)
    if cache is None:
        return
    if user_id is None:
        cache.clear()
    else:
        cache.pop(user_id, None)


def _feature(feature: str) -> type:
    kind = FEATURES.get(feature)
    if kind is None:
        raise UnknownFeature(f"Unknown feature {feature!r}.")
    return kind


def may(user_id: uuid.UUID, feature: str) -> bool:
    """Whether ``user_id`` may use ``feature`` now: a yes/no feature's value; a count that is
    unlimited or above zero; a multiplier above 1."""
    kind = _feature(feature)
    value = of_user(user_id)[feature]
    if kind is bool:
        return bool(value)
    if kind is int:
        return value is None or value > 0
    return value > 1


def limit(user_id: uuid.UUID, feature: str):
    """A number-valued feature for ``user_id``: an int (None: unlimited) or a Decimal multiplier."""
    kind = _feature(feature)
    if kind is bool:
        raise UnknownFeature(f"{feature} is yes or no: ask may().")
    return of_user(user_id)[feature]
