"""The renewal job's invoices per second: ``BENCH_BILLING_SUBSCRIPTIONS`` (10,000) monthly
subscriptions of the scale students to a bench plan (1.00 AZR a month, paid from the 1,000 AZR
the demo's scale seeding gives each), inserted in bulk with their period starting now; then the
clock moves to their renewal and the job's function (``services.run_due``, as the worker runs
it: one transaction a pass, up to 500 renewals then 500 charges) runs until nothing is due. The
rate is invoices generated and charged per second of the job's time.

Afterwards the bench's subscriptions are ended (a bulk update) and its plan archived, so the next
run finds the same students free to subscribe again.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

SUBSCRIPTIONS = int(os.environ.get("BENCH_BILLING_SUBSCRIPTIONS", "10000"))
PRICE = Decimal("1.00")


@dataclass
class Renewals:
    subscriptions: int
    invoices: int
    paid: int
    failed: int
    passes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.invoices / self.seconds if self.seconds else float("nan")


def _subscribe_in_bulk(count: int) -> tuple[uuid.UUID, int, object]:
    """The bench plan and ``count`` active subscriptions of funded scale students to it, their
    first period starting now; returns (plan id, how many, when they renew)."""
    from sqlalchemy import insert, select

    from portal.db import db
    from portal.money.billing import periods
    from portal.money.billing.models import Interval, Plan, PlanStatus, Subscription, SubscriptionStatus
    from portal.money.wallets import ledger
    from portal.money.wallets.models import Wallet, WalletKind, WalletStatus

    plan = Plan(code=f"bench-{uuid.uuid4().hex[:8]}", version=1, status=PlanStatus.ACTIVE, name="Bench",
                description="", price=PRICE, currency="AZR", interval=Interval.MONTHLY, trial_days=0,
                entitlements={}, position=1000)
    db.session.add(plan)
    db.session.flush()
    live = select(Subscription.user_id).where(Subscription.status != SubscriptionStatus.CANCELED)
    with ledger.as_ledger():
        users = list(db.session.scalars(
            select(Wallet.user_id).where(Wallet.kind == WalletKind.USER, Wallet.currency == "AZR",
                                         Wallet.status == WalletStatus.ACTIVE,
                                         Wallet.balance - Wallet.locked_balance >= PRICE * 2,
                                         Wallet.user_id.not_in(live))
            .order_by(Wallet.user_id).limit(count)))
    now = periods.now()
    start, end = periods.period_bounds(now, 1, 0)
    rows = [{"id": uuid.uuid4(), "user_id": user_id, "plan_id": plan.id, "status": SubscriptionStatus.ACTIVE,
             "anchor_at": now, "anchor_day": now.day, "period_index": 0, "current_period_start": start,
             "current_period_end": end, "cancel_at_period_end": False, "created_at": now, "updated_at": now}
            for user_id in users]
    for first in range(0, len(rows), 2000):
        db.session.execute(insert(Subscription), rows[first:first + 2000])
    return plan.id, len(rows), end


def renewals(app, count: int = SUBSCRIPTIONS) -> Renewals:
    """Subscribe ``count`` scale students, move to their renewal, time the job until done."""
    from sqlalchemy import update

    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.money.billing import services
    from portal.money.billing.models import Plan, PlanStatus, Subscription, SubscriptionStatus

    actor = Actor.system("bench")
    with app.app_context():
        with unit_of_work(actor):
            plan_id, made, renews_at = _subscribe_in_bulk(count)
        at = renews_at + timedelta(minutes=1)
        invoices = paid = failed = passes = 0
        started = time.perf_counter()
        try:
            while True:
                with unit_of_work(actor):
                    counts = services.run_due(at)
                passes += 1
                renewed, charged = counts["renewals"], counts["charges"]
                invoices += renewed["invoices"]
                paid += charged["paid"]
                failed += charged["failed"] + charged["final"]
                if not renewed["subscriptions"] and not (charged["paid"] + charged["failed"] + charged["final"]):
                    break
            seconds = time.perf_counter() - started
        finally:
            with unit_of_work(actor):
                db.session.execute(update(Subscription).where(Subscription.plan_id == plan_id,
                                                              Subscription.status != SubscriptionStatus.CANCELED)
                                   .values(status=SubscriptionStatus.CANCELED, ended_at=at, end_reason="bench"))
                db.session.execute(update(Plan).where(Plan.id == plan_id).values(status=PlanStatus.ARCHIVED,
                                                                                  archived_at=at))
            db.session.remove()
    return Renewals(made, invoices, paid, failed, passes, seconds)


def print_renewals(result: Renewals) -> None:
    print(f"\nBilling renewal job over {result.subscriptions:,} subscriptions: {result.invoices:,} invoices made, "
          f"{result.paid:,} charged, {result.failed:,} refused, in {result.passes} passes, {result.seconds:.1f} s: "
          f"{result.rate:.1f} invoices/s")
