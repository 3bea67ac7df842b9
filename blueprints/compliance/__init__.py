"""Compliance for officers and admins: the KYC review queue, AML screening and its hits, the
watchlist, transaction-monitoring cases and their reports, the officers' dashboard, and
security events and blocks.

One blueprint, a module per part: ``kyc_review``, ``screening``, ``cases`` and ``security``.
(Students' own identity verification lives with their wallet, whose limits it unlocks; their
login sessions with their account.)
"""

from flask import Blueprint

bp = Blueprint("compliance", __name__, url_prefix="/compliance")

from blueprints.compliance import cases, kyc_review, screening, security  # noqa: E402,F401
