"""The daily penalty accrual over many late loans: ``make bench-lending`` (``LOANS``, default
10,000). Prints loans accrued per second for a first run (one day of penalties on every loan)
and for a second run of the same day (nothing to add: the unique accrual rows say so).

The loans are written straight into a scratch database (a hundred borrowers, each loan twelve
monthly instalments, the first due the day before), not through the services: the bench measures
the job, not the making of its input."""

from __future__ import annotations

import os
import time
import uuid
from datetime import date
from decimal import Decimal

LOANS = int(os.environ.get("LOANS", "10000"))
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


def main() -> None:
    from portal.db import db
    from portal.db.context import Actor, acting_as
    from portal.money.lending import tasks
    from tests.db import separate_app

    with separate_app("azora_bench_lending") as (app, _owner, _app_url), app.app_context(), \
            acting_as(Actor.system("bench")):
        _seed(LOANS)
        for label in ("first run", "second run, same day"):
            began = time.perf_counter()
            counts = tasks.accrue_penalties(DAY)
            db.session.commit()
            seconds = time.perf_counter() - began
            print(f"Penalty accrual, {label}: {LOANS} loans in {seconds:.1f} s "
                  f"({LOANS / seconds:.0f} loans/s), {counts['days_accrued']} loan-days accrued")


if __name__ == "__main__":
    main()
