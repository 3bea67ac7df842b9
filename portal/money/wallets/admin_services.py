"""What money administrators (and the ledger's own jobs) change: the recorded result of a ledger
verification, freezing and unfreezing a user's wallet, and creating fee rules without
overwriting one by accident.

None of this moves value. Freezing is ledger-adjacent: the ledger refuses to move money out of
or into a frozen wallet, so the status changes under the same row lock the ledger takes, and
the audit trigger keeps who did it, when and why (the reason is a column of the row).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, Forbidden, NotFound
from portal.money.currency import currency, parse_amount
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import TransactionFee, TransactionType, Wallet, WalletKind, WalletStatus
from portal.platform.analytics.models import Metric
from portal.platform.cache import services as cache
from portal.platform.notifications.services import notify
from portal.security.permissions import Permission, has_permission

#: The name of the ``metrics`` rows a verification writes.
VERIFICATION_METRIC = "ledger.verification"
#: The shared cache's entry of the summed wallets the money overview shows (``admin_queries``).
POSITIONS_KEY = cache.shared_key("wallet-positions")
#: At most this many problems are kept in a metric's labels (the count is always exact): a
#: broken ledger can have a difference per wallet, and a page shows the first few anyway.
MAX_RECORDED_PROBLEMS = 50
MAX_PROBLEM_LENGTH = 300
REASON_MIN, REASON_MAX = 5, 300


class InvalidStatusChange(DomainError):
    status_code = 422


def _require_money_admin(actor: User) -> None:
    if actor is None or not has_permission(actor.role, Permission.MANAGE_MONEY):
        raise Forbidden("Only money administrators may do this.")


# -- Verification ---------------------------------------------------------------------------------


@dataclass
class RecordedVerification:
    report: ledger.Verification
    metric: Metric

    @property
    def ok(self) -> bool:
        return self.report.ok


def verification_labels(report: ledger.Verification, ran_by: str) -> dict:
    """What a verification's metric row keeps: the counts, each currency's sum as exact text
    (JSON numbers would go through float), who ran it, and the first problems."""
    problems = [p if len(p) <= MAX_PROBLEM_LENGTH else p[:MAX_PROBLEM_LENGTH - 1] + "\u2026"
                for p in report.problems[:MAX_RECORDED_PROBLEMS]]
    return {
        "ok": report.ok,
        "wallets": report.wallets,
        "transactions": report.transactions,
        "currencies": {code: str(total) for code, total in sorted(report.currencies.items())},
        "problem_count": len(report.problems),
        "problems": problems,
        "truncated": len(report.problems) > len(problems),
        "ran_by": ran_by[:100],
    }


def verify_and_record(ran_by: str) -> RecordedVerification:
    """Run ``ledger.verify()`` and keep its result as a ``ledger.verification`` metric (value: the
    number of problems). The caller commits: the CLI command, the nightly job or the admin's
    "Verify now" button."""
    report = ledger.verify()
    metric = Metric(name=VERIFICATION_METRIC, value=len(report.problems),
                    labels=verification_labels(report, ran_by), recorded_at=report.checked_at or utcnow())
    db.session.add(metric)
    db.session.flush()
    return RecordedVerification(report, metric)


# -- Freezing a wallet ----------------------------------------------------------------------------


def set_wallet_frozen(actor: User, wallet_id: uuid.UUID, frozen: bool, reason: str | None) -> Wallet:
    """Freeze (``frozen=True``) or unfreeze a user's wallet, with a reason the owner is told.

    The wallet row is locked first, as the ledger locks it, so a movement in flight finishes
    before the status changes and none starts on a stale status."""
    _require_money_admin(actor)
    reason = " ".join((reason or "").split())
    if len(reason) < REASON_MIN:
        raise InvalidStatusChange(f"Give a reason of at least {REASON_MIN} characters: the owner is told it.",
                                  field="reason")
    if len(reason) > REASON_MAX:
        raise InvalidStatusChange(f"Keep the reason under {REASON_MAX} characters.", field="reason")
    with ledger.as_ledger():
        wallet = db.session.scalar(select(Wallet).where(Wallet.id == wallet_id).with_for_update()
                                   .execution_options(populate_existing=True))
        if wallet is None:
            raise NotFound("That wallet does not exist.")
        if wallet.kind != WalletKind.USER:
            raise InvalidStatusChange("System wallets cannot be frozen.")
        wanted = WalletStatus.FROZEN if frozen else WalletStatus.ACTIVE
        if wallet.status == WalletStatus.CLOSED:
            raise InvalidStatusChange("This wallet is closed; its status cannot change.")
        if wallet.status == wanted:
            raise InvalidStatusChange(f"This wallet is already {wanted.value}.")
        wallet.status = wanted
        wallet.status_reason = reason
        db.session.flush()
    cache.invalidate_on_commit(POSITIONS_KEY)  # the overview counts wallets that are not active
    if frozen:
        notify(wallet.user_id, "wallet", f"Your {wallet.currency} wallet is frozen",
               f"No money can move into or out of it for now. Reason: {reason}", "/wallet/")
    else:
        notify(wallet.user_id, "wallet", f"Your {wallet.currency} wallet is active again",
               f"Reason: {reason}", "/wallet/")
    return wallet


# -- Fee rules ------------------------------------------------------------------------------------


def draft_fee_rule(kind: str, code: str, *, fixed, percent, minimum, maximum) -> TransactionFee:
    """The rule these figures would make, checked as ``fees.save_rule`` checks them, never added
    to the session (the live example beside the form). Raises ``InvalidFeeRule`` like it."""
    try:
        kind_value = TransactionType(kind)
    except ValueError:
        raise fees.InvalidFeeRule("Choose a transaction type.", field="transaction_type") from None
    if kind_value not in fees.CHARGEABLE:
        raise fees.InvalidFeeRule("Fees apply to transfers, conversions and withdrawals only.",
                                  field="transaction_type")
    code = currency(code).code
    fixed_amount = fees._parse(fixed, code, "Fixed amount")
    minimum_amount = fees._parse(minimum, code, "Minimum")
    maximum_amount = fees._parse(maximum, code, "Maximum", optional=True)
    try:
        percent_value = parse_amount(str(percent or "0"), "BTC", allow_zero=True)
    except DomainError as exc:
        raise fees.InvalidFeeRule(f"Percent: {exc.message}", field="percent") from exc
    if percent_value != percent_value.quantize(Decimal("0.0001")) or percent_value > fees.MAX_PERCENT:
        raise fees.InvalidFeeRule(f"Percent: at most four decimal places and at most {fees.MAX_PERCENT}.",
                                  field="percent")
    if maximum_amount is not None and maximum_amount < minimum_amount:
        raise fees.InvalidFeeRule("Maximum: must not be below the minimum.", field="maximum")
    return TransactionFee(transaction_type=kind_value, currency=code, fixed_amount=fixed_amount,
                          percent=percent_value, minimum=minimum_amount, maximum=maximum_amount, active=True)


def create_fee_rule(actor: User, kind: str, code: str, **values) -> TransactionFee:
    """A new fee rule; refuses one for a type and currency that already has a rule (editing that
    rule is the way to change it), so a second admin's form cannot silently replace it."""
    _require_money_admin(actor)
    try:
        kind_value = TransactionType(kind)
    except ValueError:
        raise fees.InvalidFeeRule("Choose a transaction type.", field="transaction_type") from None
    code = currency(code).code
    existing = db.session.scalar(select(TransactionFee.id).where(TransactionFee.transaction_type == kind_value,
                                                                 TransactionFee.currency == code))
    if existing is not None:
        raise fees.InvalidFeeRule(f"There is already a rule for {kind_value.label.lower()}s in {code}: "
                                  "edit it in the list instead.", field="transaction_type")
    return fees.save_rule(actor.id, kind_value.value, code, **values)


def update_fee_rule(actor: User, rule_id: uuid.UUID, **values) -> TransactionFee:
    """Change an existing rule's figures (its type and currency stay)."""
    _require_money_admin(actor)
    rule = db.session.get(TransactionFee, rule_id)
    if rule is None:
        raise NotFound("That fee rule does not exist.")
    return fees.save_rule(actor.id, rule.transaction_type.value, rule.currency, **values)


def delete_fee_rule(actor: User, rule_id: uuid.UUID) -> None:
    _require_money_admin(actor)
    fees.delete_rule(rule_id)
