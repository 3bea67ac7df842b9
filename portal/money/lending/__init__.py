"""Lending (spec service 2): student micro-loans with risk assessment, exact repayment schedules,
crypto collateral valued from live rates, arrears and a portfolio an officer can read.

What pages and commands call (all HTTP-free; the caller commits once, or rolls back on a
``DomainError``, whose message is for the user and whose ``field`` names the form field:
``product``, ``amount``, ``term``, ``purpose``, ``collateral_currency``, ``collateral_amount``,
``rate``, ``reason``, ``grace``):

``services`` (writes; ``today()`` is the one clock)
    Student: ``offer(user, product_id, amount, term)`` -> Offer (rate, fee, schedule, total_cost,
    apr, assessment); ``apply(user, product_id, amount, term, purpose, idempotency_key, *,
    collateral_currency=None, raw_collateral=None)`` -> Loan; ``withdraw(user, loan_id)``;
    ``accept_offer(user, loan_id)`` (after a counter-offer); ``repay(user, loan_id, amount,
    idempotency_key)`` -> Repayment; ``payoff_amount(loan)``; ``set_auto_repay(user, loan_id, on)``;
    ``own_loan(user, loan_id)``.
    Officer (``Permission.MANAGE_MONEY``): ``approve(officer, loan_id, reason)`` (four eyes above
    ``LENDING_FOUR_EYES_ABOVE``), ``reject(officer, loan_id, reason)``, ``counter_offer(officer,
    loan_id, amount, term, rate, reason)``, ``disburse(officer, loan_id)``, ``restructure(officer,
    loan_id, term, rate, reason, grace=0)``, ``write_off(officer, loan_id, reason)``,
    ``create_product(officer, ...)``.
``queries`` (the student's pages)
    ``borrowing_overview(user)`` (each product with the assessment's lines, limit, band),
    ``my_loans(user)``, ``loan_detail(user, loan_id)`` (schedule with paid / due / overdue,
    repayments, collateral, history, payoff today, due now).
``admin_queries`` (officers; compliance officers read)
    ``queue(officer)``, ``loan_book(officer)``, ``portfolio(officer)`` (PAR 1/30/90, aging
    buckets per currency), ``collections(officer)``, ``book_csv(officer)``.
``tasks``
    ``lending_daily`` (periodic, 00:10 UTC) = ``run_daily(day)``: ``accrue_penalties``,
    ``auto_repayments``, ``value_collaterals``.

``schedules`` is pure arithmetic (no database); ``assessment`` explains what a student could
borrow; ``states`` holds the one transition table of loans and instalments.
"""
