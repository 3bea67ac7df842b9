"""Transaction monitoring: the rules, their settings, and their evaluation on one ledger movement.

Each committed ledger transaction that moves value into or out of a user wallet (phases
``single`` and ``post``; fee legs are part of the movement they pay for and are not judged on
their own) is looked at from the side of each user it involves: the sender (``out``) and the
recipient (``in``). For one side, ONE aggregate query over that user's movements in the
currency (two index range scans, ``ix_transactions_debit_history`` and
``ix_transactions_credit_history``, with ``FILTER`` clauses) gives every figure the five rules
need; no Python loop walks the history.

The rules, in the spirit of Marble's scenarios:

- ``large_amount``: the movement is at or above the currency's large amount, or the user's
  movements in the same direction within a window add up to it;
- ``structuring``: several amounts just under the large amount (a band, e.g. 80-100 %) in the
  same direction within a few days, the current one among them;
- ``velocity``: too many outgoing movements, or too much sent, within a window;
- ``rapid_in_out``: most of what came in within a short window is sent on again;
- ``new_account``: an account younger than some days moving a lot of value.

Card activity (``evaluate_card``, on each card authorization, approved or declined, since a
decline moves no money and has no ledger row; the captures themselves are ledger movements and
meet the rules above):

- ``card_declines``: many declined card authorizations of one user within a short window;
- ``card_high_risk_mcc``: an authorization at a high-risk merchant category (gambling,
  quasi-cash and crypto, money transfer: ``portal.money.cards.codes.HIGH_RISK_MCCS``);
- ``card_abroad_after_kyc``: a purchase in a country other than the identity-verification
  country within hours of a change to the user's verification (a new submission or decision),
  the pattern of a taken-over account.

Amount parameters are percentages of the currency's large amount, so one setting serves every
currency; the large amounts themselves come from ``MONITORING_LARGE_AMOUNTS`` and may be
overridden per currency by admins. The defaults are the ``RULES`` table below; a
``monitoring_rules`` row overrides a rule's switch and parameters. Each rule that fires adds its
score; the alert's risk score is the sum capped at 100. Evaluation reads transactions up to and
including the one judged, never later ones, so running it again gives the same answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance.aml.models import MonitoringAlert, MonitoringRule
from portal.compliance.cases import services as cases
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError
from portal.money.currency import CURRENCIES, format_amount, parse_amount
from portal.money.wallets.models import Phase, Transaction, TransactionType

MAX_SCORE = 100


class InvalidRuleSettings(DomainError):
    status_code = 422


@dataclass(frozen=True)
class Param:
    """One editable parameter of a rule: a whole number within bounds."""

    name: str
    label: str
    minimum: int
    maximum: int
    unit: str = ""


@dataclass(frozen=True)
class RuleSpec:
    name: str
    title: str
    #: What the rule looks for, in words an officer reads on the rules page.
    description: str
    #: The parameters' defaults (every rule has ``score``).
    defaults: dict
    params: tuple[Param, ...]


_SCORE = Param("score", "Score added when it fires", 1, 100, "points")

#: The one table of defaults. Percentages are of the currency's large amount.
RULES: dict[str, RuleSpec] = {spec.name: spec for spec in (
    RuleSpec("large_amount", "Large amount",
             "A movement at or above the currency's large amount, or movements in the same direction "
             "adding up to it within the window.",
             {"score": 40, "window_hours": 24},
             (_SCORE, Param("window_hours", "Window for the sum", 1, 720, "hours"))),
    RuleSpec("structuring", "Structuring",
             "Several amounts just under the large amount (from the band's lower edge up to it) in the "
             "same direction within a few days.",
             {"score": 35, "lower_percent": 80, "days": 3, "min_count": 3},
             (_SCORE, Param("lower_percent", "Band starts at", 50, 99, "% of the large amount"),
              Param("days", "Within", 1, 30, "days"), Param("min_count", "At least", 2, 50, "movements"))),
    RuleSpec("velocity", "Velocity",
             "Too many outgoing movements, or too much sent, within the window.",
             {"score": 20, "window_hours": 24, "max_count": 10, "max_sum_percent": 150},
             (_SCORE, Param("window_hours", "Window", 1, 720, "hours"),
              Param("max_count", "Fires from", 2, 1000, "outgoing movements"),
              Param("max_sum_percent", "or from a sum of", 10, 10000, "% of the large amount"))),
    RuleSpec("rapid_in_out", "Rapid in and out",
             "Money received and most of it sent on within a short time.",
             {"score": 30, "window_minutes": 60, "pass_through_percent": 80, "min_incoming_percent": 10},
             (_SCORE, Param("window_minutes", "Within", 5, 10080, "minutes"),
              Param("pass_through_percent", "Sent on at least", 10, 100, "% of what came in"),
              Param("min_incoming_percent", "Only when the incoming reached", 1, 1000, "% of the large amount"))),
    RuleSpec("new_account", "New account moving high value",
             "An account younger than some days moving more than a share of the large amount since it opened.",
             {"score": 25, "account_days": 14, "amount_percent": 50},
             (_SCORE, Param("account_days", "Account younger than", 1, 365, "days"),
              Param("amount_percent", "Moving more than", 1, 10000, "% of the large amount"))),
    RuleSpec("card_declines", "Many card declines",
             "Many declined card authorizations of one user within a short window (card testing, a stolen card).",
             {"score": 30, "window_minutes": 60, "min_count": 5},
             (_SCORE, Param("window_minutes", "Within", 1, 1440, "minutes"),
              Param("min_count", "Fires from", 2, 100, "declines"))),
    RuleSpec("card_high_risk_mcc", "High-risk card category",
             "A card authorization at a high-risk merchant category: gambling, quasi-cash and crypto, money transfer.",
             {"score": 25}, (_SCORE,)),
    RuleSpec("card_abroad_after_kyc", "Card abroad after a verification change",
             "A card purchase in a country other than the verified one soon after the user's identity "
             "verification changed.",
             {"score": 35, "hours": 72},
             (_SCORE, Param("hours", "Within", 1, 720, "hours of the change"))),
)}

#: The rules that judge card authorizations (``evaluate_card``), not ledger movements.
CARD_RULES = ("card_declines", "card_high_risk_mcc", "card_abroad_after_kyc")


@dataclass
class RuleSetting:
    spec: RuleSpec
    enabled: bool
    params: dict
    #: Whether an admin changed it (a row exists), and who and when, for the rules page.
    customised: bool = False
    updated_at: datetime | None = None
    updated_by_id: uuid.UUID | None = None


@dataclass
class Settings:
    rules: dict[str, RuleSetting]
    #: Large amount per currency: configuration, overridden by admins on the large-amount rule.
    large_amounts: dict[str, Decimal]
    #: The currencies whose large amount an admin overrode.
    overridden: frozenset = frozenset()

    def enabled(self, name: str) -> bool:
        return self.rules[name].enabled

    def p(self, name: str, param: str) -> int:
        return int(self.rules[name].params[param])


def plain_amount(amount: Decimal | None) -> str:
    """An amount as a person types it: no trailing zeros, no grouping (``100000``, ``0.25``)."""
    if amount is None:
        return ""
    text = f"{amount:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def configured_large_amounts() -> dict[str, Decimal]:
    configured = current_app.config.get("MONITORING_LARGE_AMOUNTS") or {}
    amounts = {}
    for code, raw in configured.items():
        if code in CURRENCIES:
            try:
                amounts[code] = parse_amount(raw, code)
            except DomainError:
                continue
    return amounts


def load_settings() -> Settings:
    """Every rule's settings: defaults merged with the admins' rows (one query)."""
    rows = {row.name: row for row in db.session.scalars(select(MonitoringRule))}
    rules = {}
    large = configured_large_amounts()
    overridden = set()
    for name, spec in RULES.items():
        row = rows.get(name)
        params = dict(spec.defaults)
        if row is not None:
            for param in spec.params:
                value = (row.params or {}).get(param.name)
                if isinstance(value, int) and param.minimum <= value <= param.maximum:
                    params[param.name] = value
            if name == "large_amount":
                for code, raw in ((row.params or {}).get("amounts") or {}).items():
                    if code in CURRENCIES:
                        try:
                            large[code] = parse_amount(raw, code)
                            overridden.add(code)
                        except DomainError:
                            continue
        rules[name] = RuleSetting(spec, row.enabled if row is not None else True, params, row is not None,
                                  row.updated_at if row is not None else None,
                                  row.updated_by_id if row is not None else None)
    return Settings(rules, large, frozenset(overridden))


# -- Editing (admins) -----------------------------------------------------------------------------


def validate_params(name: str, raw: dict) -> dict:
    """The rule's parameters from a form (text values), checked; raises with ``field`` set to the
    form field's name (``<param>`` or ``amount_<CODE>``)."""
    spec = RULES.get(name)
    if spec is None:
        raise DomainError("There is no such monitoring rule.")
    params: dict = {}
    for param in spec.params:
        value = str(raw.get(param.name, "")).strip()
        if not value:
            raise InvalidRuleSettings(f"{param.label}: enter a whole number.", field=param.name)
        if not value.isascii() or not value.isdigit():
            raise InvalidRuleSettings(f"{param.label}: enter a whole number, like {spec.defaults[param.name]}.",
                                      field=param.name)
        number = int(value)
        if not param.minimum <= number <= param.maximum:
            raise InvalidRuleSettings(f"{param.label}: must be between {param.minimum} and {param.maximum}.",
                                      field=param.name)
        params[param.name] = number
    if name == "structuring" and params["lower_percent"] >= 100:
        raise InvalidRuleSettings("The band must start under the large amount.", field="lower_percent")
    if name == "large_amount":
        amounts = {}
        configured = configured_large_amounts()
        for code in CURRENCIES:
            value = str(raw.get(f"amount_{code}", "")).strip()
            if not value:
                continue
            try:
                amount = parse_amount(value, code)
            except DomainError as exc:
                raise InvalidRuleSettings(f"Large amount in {code}: {exc.message}", field=f"amount_{code}") from exc
            if configured.get(code) != amount:
                amounts[code] = str(amount)
        params["amounts"] = amounts
    return params


def save_rule(actor: User, name: str, *, enabled: bool, raw: dict) -> MonitoringRule:
    """Save an admin's settings for rule ``name`` (validated; nothing saved when refused)."""
    params = validate_params(name, raw)
    row = db.session.scalar(select(MonitoringRule).where(MonitoringRule.name == name).with_for_update())
    if row is None:
        row = MonitoringRule(name=name)
        db.session.add(row)
    row.enabled = bool(enabled)
    row.params = params
    row.updated_by_id = actor.id
    db.session.flush()
    return row


def reset_rule(actor: User, name: str) -> None:  # noqa: ARG001 - the audit trail records the actor
    """Back to the defaults of ``RULES`` (and the configured large amounts)."""
    if name not in RULES:
        raise DomainError("There is no such monitoring rule.")
    row = db.session.scalar(select(MonitoringRule).where(MonitoringRule.name == name))
    if row is not None:
        db.session.delete(row)
        db.session.flush()


# -- Evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Movement:
    """One transaction as seen from one user's side."""

    transaction_id: uuid.UUID
    user_id: uuid.UUID
    user_created_at: datetime
    #: ``out``: the user's wallet was debited; ``in``: credited.
    direction: str
    amount: Decimal
    currency: str
    at: datetime


@dataclass
class RuleResult:
    rule: str
    fired: bool
    score: int = 0
    detail: str = ""

    def as_json(self) -> dict:
        return {"rule": self.rule, "title": RULES[self.rule].title, "score": self.score, "detail": self.detail}


@dataclass
class Evaluation:
    movement: Movement
    results: list[RuleResult] = field(default_factory=list)

    @property
    def fired(self) -> list[RuleResult]:
        return [r for r in self.results if r.fired]

    @property
    def risk_score(self) -> int:
        return min(MAX_SCORE, sum(r.score for r in self.fired))


_AGGREGATES = text("""
WITH m AS (
    SELECT amount, "createdAt" AS at, 'out' AS dir FROM transactions
     WHERE "debitUserId" = :user_id AND currency = :currency AND phase IN ('single', 'post') AND type <> 'fee'
       AND "createdAt" > :since AND "createdAt" <= :at
    UNION ALL
    SELECT amount, "createdAt" AS at, 'in' AS dir FROM transactions
     WHERE "creditUserId" = :user_id AND currency = :currency AND phase IN ('single', 'post') AND type <> 'fee'
       AND "createdAt" > :since AND "createdAt" <= :at
), first_in AS (
    SELECT min(at) AS at FROM m WHERE dir = 'in' AND at > :rapid_since
)
SELECT
    coalesce(sum(amount) FILTER (WHERE dir = :direction AND at > :large_since), 0) AS large_sum,
    count(*) FILTER (WHERE dir = :direction AND at > :structuring_since
                     AND amount >= :band_low AND amount < :large) AS structuring_count,
    coalesce(sum(amount) FILTER (WHERE dir = :direction AND at > :structuring_since
                                 AND amount >= :band_low AND amount < :large), 0) AS structuring_sum,
    count(*) FILTER (WHERE dir = 'out' AND at > :velocity_since) AS velocity_count,
    coalesce(sum(amount) FILTER (WHERE dir = 'out' AND at > :velocity_since), 0) AS velocity_sum,
    coalesce(sum(amount) FILTER (WHERE dir = 'in' AND at > :rapid_since), 0) AS rapid_in,
    coalesce(sum(amount) FILTER (WHERE dir = 'out' AND at >= (SELECT at FROM first_in)), 0) AS rapid_out,
    coalesce(sum(amount) FILTER (WHERE at >= :account_since), 0) AS account_sum
FROM m
""")


def _pct(amount: Decimal, percent: int) -> Decimal:
    return amount * Decimal(percent) / Decimal(100)


def _hours(hours: int) -> str:
    return f"{hours} hour{'s' if hours != 1 else ''}" if hours % 24 else f"{hours // 24} day{'s' if hours != 24 else ''}"


def evaluate(movement: Movement, settings: Settings) -> Evaluation:
    """Every enabled rule on one side of one transaction (one aggregate query, none when the
    currency has no large amount configured)."""
    evaluation = Evaluation(movement)
    large = settings.large_amounts.get(movement.currency)
    if large is None or large <= 0:
        return evaluation
    at, code, out = movement.at, movement.currency, movement.direction == "out"
    fmt = format_amount
    windows = {
        "large_amount": timedelta(hours=settings.p("large_amount", "window_hours")),
        "structuring": timedelta(days=settings.p("structuring", "days")),
        "velocity": timedelta(hours=settings.p("velocity", "window_hours")),
        "rapid_in_out": timedelta(minutes=settings.p("rapid_in_out", "window_minutes")),
    }
    account_days = settings.p("new_account", "account_days")
    young = at - movement.user_created_at < timedelta(days=account_days)
    since = at - max((w for name, w in windows.items() if settings.enabled(name)), default=timedelta(0))
    if young and settings.enabled("new_account"):
        since = min(since, movement.user_created_at - timedelta(seconds=1))
    if since >= at:
        return evaluation
    band_low = _pct(large, settings.p("structuring", "lower_percent"))
    row = db.session.execute(_AGGREGATES, {
        "user_id": movement.user_id, "currency": code, "since": since, "at": at, "direction": movement.direction,
        "large_since": at - windows["large_amount"], "structuring_since": at - windows["structuring"],
        "band_low": band_low, "large": large, "velocity_since": at - windows["velocity"],
        "rapid_since": at - windows["rapid_in_out"], "account_since": movement.user_created_at,
    }).one()
    verb = "sent" if out else "received"

    def add(name: str, fired: bool, detail: str = "") -> None:
        if settings.enabled(name):
            score = settings.p(name, "score") if fired else 0
            evaluation.results.append(RuleResult(name, fired, score, detail if fired else ""))

    # 1. Large amount: this movement alone, or the window's sum in its direction.
    hours = settings.p("large_amount", "window_hours")
    if movement.amount >= large:
        add("large_amount", True, f"{fmt(movement.amount, code)} {verb} in one movement, at or above the "
                                  f"large amount of {fmt(large, code)}.")
    else:
        add("large_amount", row.large_sum >= large,
            f"{fmt(row.large_sum, code)} {verb} within {_hours(hours)}, at or above the large amount of "
            f"{fmt(large, code)}.")

    # 2. Structuring: the current movement in the band, and enough others with it.
    in_band = band_low <= movement.amount < large
    count, days = row.structuring_count, settings.p("structuring", "days")
    add("structuring", in_band and count >= settings.p("structuring", "min_count"),
        f"{count} {'outgoing' if out else 'incoming'} movements between {fmt(band_low, code)} and just under "
        f"{fmt(large, code)} within {days} day{'s' if days != 1 else ''} ({fmt(row.structuring_sum, code)} in all).")

    # 3. Velocity: outgoing count or sum in the window.
    if out:
        vhours = settings.p("velocity", "window_hours")
        max_count = settings.p("velocity", "max_count")
        max_sum = _pct(large, settings.p("velocity", "max_sum_percent"))
        if row.velocity_count >= max_count:
            add("velocity", True, f"{row.velocity_count} outgoing movements within {_hours(vhours)} "
                                  f"(fires from {max_count}).")
        else:
            add("velocity", row.velocity_sum >= max_sum,
                f"{fmt(row.velocity_sum, code)} sent within {_hours(vhours)} (fires from {fmt(max_sum, code)}).")

        # 4. Rapid in and out: most of what came in within the window went out again.
        minutes = settings.p("rapid_in_out", "window_minutes")
        share = settings.p("rapid_in_out", "pass_through_percent")
        floor = _pct(large, settings.p("rapid_in_out", "min_incoming_percent"))
        fired = row.rapid_in > 0 and row.rapid_in >= floor and row.rapid_out >= _pct(row.rapid_in, share)
        percent = (row.rapid_out * 100 / row.rapid_in).quantize(Decimal(1)) if row.rapid_in else Decimal(0)
        add("rapid_in_out", fired,
            f"{fmt(row.rapid_in, code)} received and {fmt(row.rapid_out, code)} ({percent} %) sent on within "
            f"{minutes} minutes.")

    # 5. New account moving high value.
    threshold = _pct(large, settings.p("new_account", "amount_percent"))
    age = (at - movement.user_created_at).days
    add("new_account", young and row.account_sum > threshold,
        f"Account opened {age} day{'s' if age != 1 else ''} ago has moved {fmt(row.account_sum, code)} "
        f"(more than {fmt(threshold, code)}).")
    return evaluation



# -- Running the rules on committed transactions ---------------------------------------------------


def _ids(values: Iterable) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            continue
    return ids


def _title(evaluation: Evaluation) -> str:
    names = [RULES[r.rule].title for r in evaluation.fired]
    names = names[:1] + [name.lower() for name in names[1:]]  # "Large amount, structuring and velocity"
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    m = evaluation.movement
    verb = "sent" if m.direction == "out" else "received"
    return f"{joined}: {format_amount(m.amount, m.currency)} {verb}"[:200]


def _judgeable():
    return (Transaction.phase.in_([Phase.SINGLE, Phase.POST]), Transaction.type != TransactionType.FEE,
            or_(Transaction.debit_user_id.is_not(None), Transaction.credit_user_id.is_not(None)))


def unjudged_between(start: datetime, end: datetime, limit: int | None = None) -> list[tuple[uuid.UUID, datetime]]:
    """``(id, createdAt)`` of the movements committed in ``[start, end)`` that the rules may judge
    and that have no alert, oldest first, at most ``limit``: what the sweep judges next.

    A movement with an alert on one side was judged whole (``monitor`` looks at both sides in
    one go), so the sweep passes it by; ``monitor`` would add nothing for it anyway."""
    judged = select(MonitoringAlert.transaction_id).where(MonitoringAlert.transaction_id == Transaction.id)
    return [tuple(row) for row in db.session.execute(
        select(Transaction.id, Transaction.created_at)
        .where(Transaction.created_at >= start, Transaction.created_at < end, *_judgeable(), ~judged.exists())
        .order_by(Transaction.created_at, Transaction.id)
        .limit(limit))]


def monitor(transaction_ids: Iterable) -> list[MonitoringAlert]:
    """Run the rules on the given committed transactions; return the alerts this call made.

    A transaction is judged from each user side it has, each on its own: the sender (``out``)
    and the recipient (``in``) each get an alert when their side trips rules, and each side's
    case is opened or joined. A side that already has an alert is skipped, and the insert itself
    skips on the ``(transaction, user)`` unique index, so a job that runs twice, or two jobs at
    once, add nothing. (A movement between two wallets of one user would be one side twice; the
    ledger keeps one wallet per user and currency, so there is none.)
    """
    ids = _ids(transaction_ids)
    if not ids:
        return []
    alerted = {(tx_id, user_id) for tx_id, user_id in db.session.execute(
        select(MonitoringAlert.transaction_id, MonitoringAlert.user_id)
        .where(MonitoringAlert.transaction_id.in_(ids)))}
    debit_user, credit_user = aliased(User), aliased(User)
    rows = db.session.execute(
        select(Transaction, debit_user.created_at, credit_user.created_at)
        .outerjoin(debit_user, debit_user.id == Transaction.debit_user_id)
        .outerjoin(credit_user, credit_user.id == Transaction.credit_user_id)
        .where(Transaction.id.in_(ids), *_judgeable())
        .order_by(Transaction.created_at, Transaction.id)
    ).all()
    sides = [Movement(tx.id, user_id, created, direction, tx.amount, tx.currency, tx.created_at)
             for tx, debit_created, credit_created in rows
             for user_id, created, direction in ((tx.debit_user_id, debit_created, "out"),
                                                 (tx.credit_user_id, credit_created, "in"))
             if user_id is not None and (tx.id, user_id) not in alerted]
    if not sides:
        return []
    settings = load_settings()
    alerts = []
    for side in sides:
        evaluation = evaluate(side, settings)
        if evaluation.fired:
            alert = _record(evaluation)
            if alert is not None:
                alerts.append(alert)
    return alerts


def _record(evaluation: Evaluation) -> MonitoringAlert | None:
    m = evaluation.movement
    rules = [r.as_json() for r in evaluation.fired]
    score = evaluation.risk_score
    with cases.as_case_system():
        alert_id = db.session.execute(
            insert(MonitoringAlert)
            .values(id=uuid.uuid4(), user_id=m.user_id, transaction_id=m.transaction_id, rules=rules,
                    risk_score=score, created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[MonitoringAlert.transaction_id, MonitoringAlert.user_id])
            .returning(MonitoringAlert.id)
        ).scalar_one_or_none()
    if alert_id is None:
        return None
    case = cases.open_or_attach(
        m.user_id, title=_title(evaluation), severity=cases.severity_for_score(score), risk_score=score,
        source="monitoring",
        details={"alertId": str(alert_id), "transactionId": str(m.transaction_id), "direction": m.direction,
                 "amount": str(m.amount), "currency": m.currency, "rules": rules})
    with cases.as_case_system():
        alert = db.session.get(MonitoringAlert, alert_id)
        alert.case_id = case.id
        db.session.flush()
    return alert


# -- Card activity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardActivity:
    """One card authorization, as the card rules see it."""

    card_transaction_id: uuid.UUID
    user_id: uuid.UUID
    at: datetime
    declined: bool
    mcc: str
    country: str
    amount: Decimal
    currency: str


_CARD_FIGURES = text("""
SELECT
    (SELECT count(*) FROM card_transactions
      WHERE "userId" = :user_id AND kind = 'authorization' AND state = 'declined'
        AND "createdAt" > :declines_since AND "createdAt" <= :at) AS declines,
    (SELECT max(greatest(k."submittedAt", coalesce(k."decidedAt", k."submittedAt"))) FROM kyc_verifications k
      WHERE k."userId" = :user_id AND greatest(k."submittedAt", coalesce(k."decidedAt", k."submittedAt")) <= :at)
        AS kyc_changed_at,
    (SELECT k.country FROM kyc_verifications k
      WHERE k."userId" = :user_id AND k.status = 'approved' AND k.country IS NOT NULL
      ORDER BY k."decidedAt" DESC NULLS LAST LIMIT 1) AS kyc_country
""")


def evaluate_card(activity: CardActivity, settings: Settings) -> Evaluation:
    """The card rules on one authorization (one query)."""
    from portal.money.cards.codes import HIGH_RISK_MCCS, MCC_GROUPS, group_of

    movement = Movement(activity.card_transaction_id, activity.user_id, activity.at, "out", activity.amount,
                        activity.currency, activity.at)
    evaluation = Evaluation(movement)
    if not any(settings.enabled(name) for name in CARD_RULES):
        return evaluation
    minutes = settings.p("card_declines", "window_minutes")
    hours = settings.p("card_abroad_after_kyc", "hours")
    row = db.session.execute(_CARD_FIGURES, {"user_id": activity.user_id, "at": activity.at,
                                             "declines_since": activity.at - timedelta(minutes=minutes)}).one()

    def add(name: str, fired: bool, detail: str) -> None:
        if settings.enabled(name):
            evaluation.results.append(RuleResult(name, fired, settings.p(name, "score") if fired else 0,
                                                 detail if fired else ""))

    min_count = settings.p("card_declines", "min_count")
    add("card_declines", activity.declined and row.declines >= min_count,
        f"{row.declines} declined card authorizations within {minutes} minutes (fires from {min_count}).")
    group = group_of(activity.mcc)
    add("card_high_risk_mcc", activity.mcc in HIGH_RISK_MCCS,
        f"Card authorization at merchant category {activity.mcc} "
        f"({MCC_GROUPS[group][0].lower() if group else 'high risk'}).")
    recent = row.kyc_changed_at is not None and activity.at - row.kyc_changed_at <= timedelta(hours=hours)
    abroad = bool(activity.country) and row.kyc_country is not None and activity.country != row.kyc_country
    add("card_abroad_after_kyc", recent and abroad,
        f"Card purchase in {activity.country}, verified country {row.kyc_country}, "
        f"{_hours(max(1, int((activity.at - row.kyc_changed_at).total_seconds() // 3600))) if recent else ''} "
        "after the identity verification changed.")
    return evaluation


def monitor_card(card_transaction_ids: Iterable) -> list[MonitoringAlert]:
    """Run the card rules on card authorizations; an alert (and a case) per authorization that
    trips them, once (the unique index on ``(cardTransactionId, userId)``)."""
    from portal.money.cards.models import CardTransaction, CardTransactionKind, CardTransactionState

    ids = _ids(card_transaction_ids)
    if not ids:
        return []
    rows = db.session.scalars(
        select(CardTransaction).where(CardTransaction.id.in_(ids),
                                      CardTransaction.kind == CardTransactionKind.AUTHORIZATION,
                                      ~select(MonitoringAlert.id).where(
                                          MonitoringAlert.card_transaction_id == CardTransaction.id).exists())
        .order_by(CardTransaction.created_at, CardTransaction.id)).all()
    if not rows:
        return []
    settings = load_settings()
    alerts = []
    for tx in rows:
        activity = CardActivity(tx.id, tx.user_id, tx.created_at, tx.state == CardTransactionState.DECLINED,
                                tx.mcc, tx.merchant_country, tx.amount, tx.currency)
        evaluation = evaluate_card(activity, settings)
        if evaluation.fired:
            alert = _record_card(evaluation, tx)
            if alert is not None:
                alerts.append(alert)
    return alerts


def _record_card(evaluation: Evaluation, tx) -> MonitoringAlert | None:
    rules = [r.as_json() for r in evaluation.fired]
    score = evaluation.risk_score
    with cases.as_case_system():
        alert_id = db.session.execute(
            insert(MonitoringAlert)
            .values(id=uuid.uuid4(), user_id=tx.user_id, card_transaction_id=tx.id, rules=rules, risk_score=score,
                    created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[MonitoringAlert.card_transaction_id, MonitoringAlert.user_id],
                                    index_where=text('"cardTransactionId" IS NOT NULL'))
            .returning(MonitoringAlert.id)
        ).scalar_one_or_none()
    if alert_id is None:
        return None
    names = ", ".join(RULES[r.rule].title.lower() for r in evaluation.fired)
    case = cases.open_or_attach(
        tx.user_id, title=f"Card activity: {names}"[:200], severity=cases.severity_for_score(score),
        risk_score=score, source="monitoring",
        details={"alertId": str(alert_id), "cardTransactionId": str(tx.id), "merchant": tx.merchant_name,
                 "mcc": tx.mcc, "country": tx.merchant_country, "amount": str(tx.amount), "currency": tx.currency,
                 "responseCode": tx.response_code, "rules": rules})
    with cases.as_case_system():
        alert = db.session.get(MonitoringAlert, alert_id)
        alert.case_id = case.id
        db.session.flush()
    return alert
