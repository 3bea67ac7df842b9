"""Compliance (spec services 5 and 6): identity verification (``kyc``), AML screening and
transaction monitoring (``aml``), suspicious-activity cases (``cases``) and security events,
blocks and login sessions (``security``). Served by ``blueprints/compliance`` and, for a
student's own verification, ``blueprints/wallet/verification.py``."""
