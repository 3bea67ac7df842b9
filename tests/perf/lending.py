"""The daily penalty accrual over many late loans: ``make bench-lending`` (``LOANS``, default
10,000), and a part of ``make bench`` (``BENCH_LENDING_LOANS``, default ``LOANS``). Prints loans
accrued per second for a first run (one day of penalties on every loan) and for a second run of
the same day (nothing to add: the unique accrual rows say so); ``make bench`` prints them beside
pgbench's transactions per second.

The loans are written straight into a scratch database (a hundred borrowers, each loan twelve
monthly instalments, the first due the day before), not through the services: the bench measures
the job, not the making of its input."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

LOANS = int(os.environ.get("LOANS", "10000"))
#: Loans of the lending part of ``make bench``.
BENCH_LOANS = int(os.environ.get("BENCH_LENDING_LOANS", str(LOANS)))
BORROWERS = 100
DAY = date(2026, 2, 16)


def _seed(loans: int) -> None:
    from sqlalchemy import insert

    from portal.db import db
    from portal.db.base import utcnow
    from portal.money.lending import schedules, services
    from portal.money.lending.models import Loan, LoanInstalment, LoanState
    from tests.factories import create_user

    prod = services.create_product(None, name="Bench loan", currency_code="USD", min_amount=Decimal("100"),
                                   max_amount=Decimal("5000"), min_term=3, max_term=24, annual_rate=Decimal("12"),
                                   penalty_daily_percent=Decimal("0.1"))
    users = [create_user("student").id for _ in range(BORROWERS)]
    start = date(2026, 1, 15)
    plan = schedules.build(schedules.Terms(Decimal("1000.00"), Decimal("12"), 12, start))
    now = utcnow()
    loan_rows, line_rows = [], []
    for n in range(loans):
        loan_id, user_id = uuid.uuid4(), users[n % BORROWERS]
        loan_rows.append(dict(id=loan_id, user_id=user_id, product_id=prod.id, state=LoanState.ACTIVE,
                              currency="USD", principal=Decimal("1000.00"), term=12, annual_rate=Decimal("12"),
                              frequency="monthly", interest_method="declining", amortization="equal_instalments",
                              grace=0, fee=Decimal(0), penalty_daily_percent=Decimal("0.1"), apr=plan.apr,
                              total_cost=plan.total_cost, purpose="Bench", idempotency_key=uuid.uuid4().hex,
                              disbursed_on=start, created_at=now, updated_at=now))
        line_rows.extend(dict(id=uuid.uuid4(), loan_id=loan_id, user_id=user_id, number=x.number, due_on=x.due_on,
                              principal=x.principal, interest=x.interest, created_at=now, updated_at=now)
                         for x in plan.instalments)
    db.session.execute(insert(Loan), loan_rows)
    db.session.execute(insert(LoanInstalment), line_rows)
    db.session.commit()


@dataclass
class Accrual:
    label: str
    loans: int
    seconds: float
    days_accrued: int

    @property
    def rate(self) -> float:
        return self.loans / self.seconds if self.seconds else float("nan")


def accruals(loans: int = LOANS) -> list[Accrual]:
    """Seed ``loans`` late loans in the scratch database and time the accrual twice (the first
    run accrues a day on each, the second finds it done)."""
    from portal.db import db
    from portal.db.context import Actor, acting_as
    from portal.money.lending import tasks
    from tests.db import separate_app

    results = []
    with separate_app("azora_bench_lending") as (app, _owner, _app_url), app.app_context(), \
            acting_as(Actor.system("bench")):
        _seed(loans)
        for label in ("first run", "second run, same day"):
            began = time.perf_counter()
            counts = tasks.accrue_penalties(DAY)
            db.session.commit()
            results.append(Accrual(label, loans, time.perf_counter() - began, counts["days_accrued"]))
        db.session.remove()
    return results


def print_accruals(results: list[Accrual], pgbench_tps: float | None = None) -> None:
    for r in results:
        beside = f"; {r.rate / pgbench_tps:.2f} x pgbench's {pgbench_tps:.0f} tps" if pgbench_tps else ""
        print(f"Penalty accrual, {r.label}: {r.loans} loans in {r.seconds:.1f} s ({r.rate:.0f} loans/s), "
              f"{r.days_accrued} loan-days accrued{beside}")


def main() -> None:
    print_accruals(accruals(LOANS))


if __name__ == "__main__":
    main()
