"""Anti-money-laundering (AML, spec service 5): the sanctions and PEP watchlist (``watchlist``),
name matching (``matching``), screening people against it (``screening``), and transaction
monitoring: the rules, their alerts and the job that runs them after each ledger commit
(``monitoring``, ``tasks``, ``listeners``). Served by ``blueprints/compliance/screening.py`` and
the rules' settings page of ``blueprints/compliance/cases.py``."""
