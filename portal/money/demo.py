"""Demo data for money: currency pairs with a month of rates, fee rules, milestones, opening
balances and a few transfers between the demo students; and, for ``seed-demo --scale N``, a
funded wallet pair and a hundred ledger rows for each scale student (a million rows at 10,000
students, the design's large scale).

Idempotent, like the rest of the demo: what exists is left as it is.

Every balance comes from the ledger: the small demo posts through ``ledger.post`` (opening
balances from the DEPOSITS system wallet, transfers with their fee legs), so it is exactly what
the application would have written.

At scale, posting row by row through ``ledger.post`` (a lock, a balance update and an ORM flush
per movement) takes hours for a million rows, so ``seed_money_scale`` writes each batch of
students in one statement: the transactions are generated inside PostgreSQL
(``generate_series``, ``random()``) by an ``INSERT ... SELECT`` whose ``RETURNING`` feeds, in the
same statement, the one ``UPDATE`` of every touched wallet's balance by the sum of its movements.
Balances therefore equal the replay of the transactions by construction, every currency still
sums to zero (each row moves value between two wallets) and ``ledger.verify()`` passes.

What was measured (50,000 transaction rows into the migrated schema on this machine's embedded
PostgreSQL 18, 2 cores, otherwise idle):

============================================================  ===============
way of writing                                                rows per second
============================================================  ===============
multi-row INSERT of Python-made rows (1,000 per statement)              3,400
INSERT ... SELECT FROM unnest(arrays of Python-made rows)               4,200
INSERT ... SELECT generated in SQL, audit trigger on                    6,000
INSERT ... SELECT generated in SQL, as owner, trigger disabled         15,600
COPY                                                                   refused
============================================================  ===============

COPY is not an option: PostgreSQL refuses ``COPY FROM`` into a table with row-level security,
and ``transactions`` forces it even for its owner. Generating the rows in SQL is the big win
(no rows cross the wire, no parameters to bind). Disabling the audit trigger as the owner would
be 2.6 times faster still, but it needs a second connection that cannot see the students this
same seeding has just inserted (its transaction has not committed yet), an ``ACCESS EXCLUSIVE``
lock that stops a running portal, and it would leave a million ledger rows without their audit
rows, which the trail promises never happens. So the rows are written in the seeding's own
transaction with the audit trigger on. The whole statement below (wallets joined, fees, the
balance update) runs at the speed of the bare insert: 200,000 rows (2,000 students) took 178 s
while the machine was shared (load 6 on 2 cores), when the bare insert measured 1,385 rows per
second; idle, the large scale's million rows take three to four minutes, once.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from flask import current_app
from sqlalchemy import func, select, text

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.money.earnings.models import Milestone, MilestoneKind
from portal.money.exchange.models import CurrencyPair, ExchangeRate, RateSource
from portal.money.wallets import fees, ledger
from portal.money.wallets.models import SystemWallet, Transaction, TransactionFee, TransactionType, Wallet

#: Rates now (one unit of the base in the quote). AZR is the portal's own token.
RATES_NOW = {("AZR", "USD"): Decimal("0.2475"), ("BTC", "USD"): Decimal("97250.00"),
             ("ETH", "USD"): Decimal("3412.50")}
#: Pairs quoted as the ratio of two pairs above (AZR/BTC = AZR/USD / BTC/USD).
CROSS_PAIRS = {("AZR", "BTC"): (("AZR", "USD"), ("BTC", "USD"))}
#: Daily history before today, and each pair's daily volatility (a standard deviation).
HISTORY_DAYS = 30
VOLATILITY = {("AZR", "USD"): 0.012, ("BTC", "USD"): 0.025, ("ETH", "USD"): 0.03}
RATE_PLACES = {"USD": Decimal("0.0001"), "BTC": Decimal("0.000000000001")}

#: (type, currency, fixed, percent, minimum, maximum).
FEE_RULES = [
    (TransactionType.TRANSFER, "USD", "0", "0.5", "0.01", "5"),
    (TransactionType.TRANSFER, "AZR", "0", "0.5", "0.01", "50"),
    (TransactionType.CONVERSION, "USD", "0", "0.75", "0.01", ""),
    (TransactionType.CONVERSION, "AZR", "0", "0.75", "0.01", ""),
    (TransactionType.WITHDRAWAL, "USD", "1", "0", "0", ""),
    (TransactionType.WITHDRAWAL, "AZR", "2", "0", "0", ""),
]

MILESTONES = [
    {"title": "Course finisher", "kind": MilestoneKind.COURSE_COMPLETED,
     "description": "Complete any course.", "reward_amount": Decimal(50)},
    {"title": "Quiz ace", "kind": MilestoneKind.QUIZ_PASSED, "min_score": Decimal(80),
     "description": "Pass any quiz with a score of 80% or more.", "reward_amount": Decimal(10)},
    {"title": "Three-day streak", "kind": MilestoneKind.STREAK, "streak_days": 3,
     "description": "Learn on three days in a row.", "reward_amount": Decimal(5)},
]

#: Opening balances of the demo students, in order (AZR, USD).
OPENING = [(Decimal("250"), Decimal("120")), (Decimal("180"), Decimal("75.50")), (Decimal("320"), Decimal("40")),
           (Decimal("95"), Decimal("210")), (Decimal("150"), Decimal("60")), (Decimal("400"), Decimal("15")),
           (Decimal("60"), Decimal("95"))]
#: (from student, to student, amount, currency, note).
TRANSFERS = [
    (0, 1, Decimal("25"), "AZR", "Thanks for the study notes"),
    (1, 2, Decimal("12.50"), "USD", "Lunch on Friday"),
    (2, 0, Decimal("40"), "AZR", "Quiz bet: you won"),
    (3, 0, Decimal("20"), "USD", "Half of the textbook"),
    (0, 4, Decimal("7.25"), "USD", "Coffee"),
    (4, 3, Decimal("15"), "AZR", ""),
    (5, 1, Decimal("60"), "AZR", "Group project prize share"),
]
DEMO_MARK = "demo"


# ---------------------------------------------------------------- the small demo


def seed_money(admin: User, students: list[User]) -> dict[str, int]:
    """Create what is missing; returns how many of each thing were created."""
    created = {"pairs": 0, "rates": 0, "fee_rules": 0, "milestones": 0, "deposits": 0, "transfers": 0,
               "prices": 0, "loan_products": 0}
    _course_price(created)
    _loan_product(admin, created)
    with ledger.as_ledger():
        _pairs_and_rates(admin, created)
        _fee_rules(admin, created)
        _milestones(admin, created)
        _opening_balances(students, created)
        if created["deposits"] and not _demo_transfers_exist():
            _transfers(students, created)
    db.session.flush()
    return created


#: The demo course sold for a price (the others stay free), and its price.
PAID_COURSE = ("data-literacy-charts-and-statistics", Decimal("19.00"), "USD")


def _course_price(created: dict) -> None:
    """Put a price on one demo course, once (a price set since is left alone). The demo students
    enrolled in it when it was seeded keep their places."""
    from portal.learning.education.models import Course

    slug, price, code = PAID_COURSE
    course = db.session.scalar(select(Course).where(Course.slug == slug))
    if course is not None and course.price is None and course.price_currency is None:
        course.price, course.price_currency = price, code
        created["prices"] += 1


#: The demo's loan product: small USD loans, monthly annuity on a declining balance.
LOAN_PRODUCT = {"name": "Student micro-loan", "currency_code": "USD", "min_amount": Decimal("100"),
                "max_amount": Decimal("3000"), "min_term": 3, "max_term": 24, "annual_rate": Decimal("9"),
                "fee_percent": Decimal("1.5"), "penalty_daily_percent": Decimal("0.05")}


def _loan_product(admin: User, created: dict) -> None:
    """The demo's loan product, once."""
    from portal.money.lending import services as lending
    from portal.money.lending.models import LoanProduct

    if db.session.scalar(select(LoanProduct.id).where(LoanProduct.name == LOAN_PRODUCT["name"])) is None:
        lending.create_product(admin, **LOAN_PRODUCT)
        created["loan_products"] += 1


def _rate_history(pair: tuple[str, str], now) -> list[tuple[object, Decimal]]:
    """(observed at, rate) for each of the past ``HISTORY_DAYS`` days at noon UTC and now: a
    random walk (seeded by the pair, so the demo is the same every time) ending at today's rate."""
    rng = random.Random("/".join(pair))
    steps = [rng.gauss(0, VOLATILITY[pair]) for _ in range(HISTORY_DAYS)]
    rate = RATES_NOW[pair]
    points = [(now, rate)]
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon >= now:
        noon -= timedelta(days=1)
    for day, step in enumerate(steps):
        rate = rate / Decimal(str(round(1 + step, 6)))
        points.append((noon - timedelta(days=day), rate))
    return points


def _quantize_rate(rate: Decimal, quote: str) -> Decimal:
    return rate.quantize(RATE_PLACES.get(quote, Decimal("0.00000001")), rounding=ROUND_HALF_EVEN)


def _pairs_and_rates(admin: User, created: dict) -> None:
    existing = {(p.base_currency, p.quote_currency): p for p in db.session.scalars(select(CurrencyPair))}
    wanted = [*RATES_NOW, *CROSS_PAIRS]
    for base, quote in wanted:
        if (base, quote) not in existing:
            pair = CurrencyPair(base_currency=base, quote_currency=quote, active=True)
            db.session.add(pair)
            existing[(base, quote)] = pair
            created["pairs"] += 1
    db.session.flush()
    with_rates = set(db.session.scalars(select(ExchangeRate.pair_id).distinct()))
    now = utcnow()
    histories = {pair: _rate_history(pair, now) for pair in RATES_NOW}
    for cross, (left, right) in CROSS_PAIRS.items():
        histories[cross] = [(at, a / b) for (at, a), (_, b) in zip(histories[left], histories[right], strict=True)]
    for key, points in histories.items():
        pair = existing[key]
        if pair.id in with_rates:
            _keep_fresh(pair, key, admin, now, created)
            continue
        for observed_at, rate in points:
            db.session.add(ExchangeRate(pair_id=pair.id, rate=_quantize_rate(rate, key[1]), source=RateSource.MANUAL,
                                        source_detail="Demo data: entered by the demo admin",
                                        observed_at=observed_at, recorded_by_id=admin.id))
            created["rates"] += 1


def _keep_fresh(pair: CurrencyPair, key: tuple[str, str], admin: User, now, created: dict) -> None:
    """A demo seeded days ago has only stale rates, and conversions refuse stale rates: when the
    pair's newest rate is older than ``EXCHANGE_RATE_MAX_AGE_SECONDS``, the demo admin enters
    today's (a small step from the last one). Within that age a second run adds nothing."""
    latest = db.session.execute(select(ExchangeRate.rate, ExchangeRate.observed_at)
                                .where(ExchangeRate.pair_id == pair.id)
                                .order_by(ExchangeRate.observed_at.desc()).limit(1)).first()
    max_age = timedelta(seconds=current_app.config.get("EXCHANGE_RATE_MAX_AGE_SECONDS", 3600))
    if latest is None or now - latest.observed_at < max_age:
        return
    step = random.Random(f"{'/'.join(key)}/{now.date()}").gauss(0, VOLATILITY.get(key, 0.01))
    rate = _quantize_rate(latest.rate * Decimal(str(round(1 + step, 6))), key[1])
    db.session.add(ExchangeRate(pair_id=pair.id, rate=rate, source=RateSource.MANUAL,
                                source_detail="Demo data: entered by the demo admin", observed_at=now,
                                recorded_by_id=admin.id))
    created["rates"] += 1


def _fee_rules(admin: User, created: dict) -> None:
    have = {tuple(row) for row in db.session.execute(select(TransactionFee.transaction_type, TransactionFee.currency))}
    for kind, code, fixed, percent, minimum, maximum in FEE_RULES:
        if (kind, code) in have:
            continue
        fees.save_rule(admin.id, kind.value, code, fixed=fixed, percent=percent, minimum=minimum, maximum=maximum)
        created["fee_rules"] += 1


def _milestones(admin: User, created: dict) -> None:
    have = set(db.session.scalars(select(Milestone.title)))
    for spec in MILESTONES:
        if spec["title"] in have:
            continue
        db.session.add(Milestone(reward_currency="AZR", active=True, created_by_id=admin.id, **spec))
        created["milestones"] += 1


def _opening_balances(students: list[User], created: dict) -> None:
    """Each demo student without a wallet in a currency gets one, funded from DEPOSITS."""
    have = {tuple(row) for row in db.session.execute(select(Wallet.user_id, Wallet.currency)
                                                     .where(Wallet.user_id.in_([s.id for s in students])))}
    for student, (azr, usd) in zip(students, OPENING, strict=False):
        for code, amount in (("AZR", azr), ("USD", usd)):
            if (student.id, code) in have:
                continue
            wallet = ledger.open_user_wallet(student.id, code)
            deposits = ledger.system_wallet(SystemWallet.DEPOSITS, code)
            ledger.post([ledger.Leg(deposits, wallet, amount, TransactionType.DEPOSIT, "Opening balance",
                                    {"from_name": "Deposit", "note": "Demo opening balance", DEMO_MARK: "opening"})])
            created["deposits"] += 1


def _demo_transfers_exist() -> bool:
    return db.session.scalar(select(func.count()).select_from(Transaction)
                             .where(Transaction.details[DEMO_MARK].astext == "transfer")) > 0


def _transfers(students: list[User], created: dict) -> None:
    """A few transfers with their fee legs, as the transfer service posts them."""
    for sender_index, recipient_index, amount, code, note in TRANSFERS:
        if max(sender_index, recipient_index) >= len(students):
            continue
        sender, recipient = students[sender_index], students[recipient_index]
        own, theirs = ledger.open_user_wallet(sender.id, code), ledger.open_user_wallet(recipient.id, code)
        details = {"from_name": sender.full_name, "to_name": recipient.full_name, "note": note, DEMO_MARK: "transfer"}
        legs = [ledger.Leg(own, theirs, amount, TransactionType.TRANSFER, f"Transfer to {recipient.full_name}",
                           details)]
        fee = fees.fee_for(TransactionType.TRANSFER, amount, code)
        if fee > 0:
            legs.append(ledger.Leg(own, ledger.system_wallet(SystemWallet.FEES, code, spread_by=sender.id), fee, TransactionType.FEE,
                                   "Transfer fee", {"to_name": "Azora fees", DEMO_MARK: "transfer",
                                                    "note": f"Fee for the transfer to {recipient.full_name}"}))
        ledger.post(legs, initiated_by_id=sender.id)
        created["transfers"] += 1


# ---------------------------------------------------------------- at scale

#: Ledger rows per scale student: two opening deposits and 49 transfers with their fee legs.
ROWS_PER_STUDENT = 100
TRANSFERS_PER_STUDENT = (ROWS_PER_STUDENT - 2) // 2
#: Students per statement (about 100,000 ledger rows each).
SCALE_BATCH = 1000
#: Opening balances cover every transfer a student can send (49 x 20.10 AZR, 49 x 5.03 USD)
#: even before anything comes in, so no balance is ever below zero at any point of the history.
SCALE_OPENING = {"AZR": Decimal("1000"), "USD": Decimal("250")}
SCALE_HISTORY_DAYS = 180
#: Share of the scale transfers made in AZR (the rest in USD).
SCALE_AZR_SHARE = 0.7

_SCALE_WALLETS = text("""
INSERT INTO wallets (id, "userId", currency, kind, balance, "lockedBalance", status, "createdAt", "updatedAt")
SELECT gen_random_uuid(), u.id, c.code, 'user', 0, 0, 'active', :opened, :opened
FROM unnest(CAST(:users AS uuid[])) AS u(id) CROSS JOIN (VALUES ('AZR'), ('USD')) AS c(code)
ON CONFLICT ("userId", currency) DO NOTHING
""")

#: One batch: opening deposits and transfers with fee legs, then every touched wallet's
#: balance moved by the sum of its rows, in one statement. A transfer's amount is 1 to 20 AZR or
#: 0.50 to 5 USD; its fee is the demo rule's 0.5 %, rounded up to the cent, at least 0.01.
_SCALE_LEDGER = text("""
WITH s AS (
    SELECT (row_number() OVER (ORDER BY u.id) - 1)::int AS n, u.id AS uid, u."fullName" AS name,
           a.id AS azr, d.id AS usd
    FROM users u
    JOIN wallets a ON a."userId" = u.id AND a.currency = 'AZR'
    JOIN wallets d ON d."userId" = u.id AND d.currency = 'USD'
    WHERE u.id = ANY(CAST(:users AS uuid[]))
), size AS (
    SELECT count(*)::int AS c FROM s
), moves AS MATERIALIZED (
    SELECT s.n, g.k, (s.n + 1 + floor(random() * (size.c - 1)))::int % size.c AS r,
           random() < :azr_share AS in_azr, random() AS x, gen_random_uuid() AS grp,
           CAST(:start AS timestamptz) + (g.k + random()) * CAST(:step AS interval) AS at
    FROM s CROSS JOIN size CROSS JOIN generate_series(1, :per_student) AS g(k)
    WHERE size.c > 1
), priced AS (
    SELECT m.grp, m.at, m.in_azr,
           CASE WHEN m.in_azr THEN 'AZR' ELSE 'USD' END AS code,
           CASE WHEN m.in_azr THEN f.azr ELSE f.usd END AS from_wallet,
           CASE WHEN m.in_azr THEN t.azr ELSE t.usd END AS to_wallet,
           f.uid AS from_user, t.uid AS to_user, f.name AS from_name, t.name AS to_name,
           CASE WHEN m.in_azr THEN round(CAST(1 + m.x * 19 AS numeric), 2)
                ELSE round(CAST(0.5 + m.x * 4.5 AS numeric), 2) END AS amount
    FROM moves m JOIN s f ON f.n = m.n JOIN s t ON t.n = m.r
), legs AS (
    SELECT gen_random_uuid() AS id, p.grp AS group_id, 'transfer' AS type, p.from_wallet AS debit,
           p.to_wallet AS credit, p.from_user AS debit_user, p.to_user AS credit_user, p.amount, p.code,
           p.from_user AS initiated_by, 'Transfer to ' || p.to_name AS description,
           jsonb_build_object('from_name', p.from_name, 'to_name', p.to_name, 'note', '') AS details, p.at
    FROM priced p
    UNION ALL
    SELECT gen_random_uuid(), p.grp, 'fee', p.from_wallet,
           CASE WHEN p.in_azr THEN CAST(:fees_azr AS uuid) ELSE CAST(:fees_usd AS uuid) END,
           p.from_user, NULL, greatest(ceil(p.amount * 0.5) / 100, 0.01), p.code, p.from_user, 'Transfer fee',
           jsonb_build_object('to_name', 'Azora fees', 'note', 'Fee for the transfer to ' || p.to_name), p.at
    FROM priced p
    UNION ALL
    SELECT gen_random_uuid(), gen_random_uuid(), 'deposit',
           CASE o.code WHEN 'AZR' THEN CAST(:deposits_azr AS uuid) ELSE CAST(:deposits_usd AS uuid) END,
           o.wallet, NULL, s.uid, o.amount, o.code, NULL, 'Opening balance',
           jsonb_build_object('from_name', 'Deposit', 'note', 'Demo opening balance'),
           CAST(:start AS timestamptz) + s.n * interval '1 second'
    FROM s CROSS JOIN LATERAL (VALUES (s.azr, 'AZR', CAST(:open_azr AS numeric)),
                                      (s.usd, 'USD', CAST(:open_usd AS numeric))) AS o(wallet, code, amount)
), ins AS (
    INSERT INTO transactions (id, "groupId", type, phase, "debitWalletId", "creditWalletId", "debitUserId",
                              "creditUserId", amount, currency, "initiatedById", description, details,
                              "createdAt", "updatedAt")
    SELECT id, group_id, type, 'single', debit, credit, debit_user, credit_user, amount, code, initiated_by,
           description, details, at, at
    FROM legs
    RETURNING "debitWalletId", "creditWalletId", amount
), delta AS (
    SELECT wallet, sum(change) AS change FROM (
        SELECT "debitWalletId" AS wallet, -amount AS change FROM ins
        UNION ALL
        SELECT "creditWalletId", amount FROM ins
    ) moved GROUP BY wallet
)
UPDATE wallets w SET balance = w.balance + delta.change, "updatedAt" = CAST(:now AS timestamptz)
FROM delta WHERE w.id = delta.wallet
""")


def scale_students_without_wallets() -> list[uuid.UUID]:
    """The scale students (``scale*@azora.example``) who have no wallet yet, in e-mail order."""
    return list(db.session.scalars(
        select(User.id).where(User.email.like("scale%@azora.example"),
                              ~select(Wallet.id).where(Wallet.user_id == User.id).exists())
        .order_by(User.email)))


def seed_money_scale(progress=None) -> int:
    """Wallets and ``ROWS_PER_STUDENT`` ledger rows for each scale student without a wallet, in
    batches of ``SCALE_BATCH`` students who send money among themselves. Returns the number of
    students funded; ``progress.update(n)`` after each batch."""
    students = scale_students_without_wallets()
    if not students:
        return 0
    now = utcnow()
    start = now - timedelta(days=SCALE_HISTORY_DAYS)
    step = timedelta(days=SCALE_HISTORY_DAYS - 1) / (TRANSFERS_PER_STUDENT + 1)
    with ledger.as_ledger():
        system = {(name, code): ledger.system_wallet(name, code)
                  for name in (SystemWallet.DEPOSITS, SystemWallet.FEES) for code in ("AZR", "USD")}
        # The system wallets every batch credits and debits, locked as the ledger locks them.
        ledger._lock([w.id for w in system.values()])
        for first in range(0, len(students), SCALE_BATCH):
            batch = students[first:first + SCALE_BATCH]
            db.session.execute(_SCALE_WALLETS, {"users": batch, "opened": start})
            db.session.execute(_SCALE_LEDGER, {
                "users": batch, "azr_share": SCALE_AZR_SHARE, "per_student": TRANSFERS_PER_STUDENT,
                "start": start, "step": step, "now": now,
                "fees_azr": system[(SystemWallet.FEES, "AZR")].id, "fees_usd": system[(SystemWallet.FEES, "USD")].id,
                "deposits_azr": system[(SystemWallet.DEPOSITS, "AZR")].id,
                "deposits_usd": system[(SystemWallet.DEPOSITS, "USD")].id,
                "open_azr": SCALE_OPENING["AZR"], "open_usd": SCALE_OPENING["USD"]})
            if progress is not None:
                progress.update(len(batch))
        # The ORM's copies of the system wallets are stale after the bulk update.
        for wallet in system.values():
            db.session.expire(wallet)
    return len(students)
