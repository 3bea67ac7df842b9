"""Lending (spec service 2): student micro-loans with risk assessment, exact repayment schedules,
crypto collateral valued from live rates, arrears and a portfolio an officer can read.

``schedules`` is pure arithmetic (no database); ``models`` the tables; ``assessment`` what a
student could borrow and why; ``services`` the writes; ``queries`` / ``admin_queries`` the reads
for pages; ``tasks`` the daily jobs.
"""
