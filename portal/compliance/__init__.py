"""Compliance (spec services 5 and 6): identity verification (``kyc``), AML screening and
transaction monitoring (``aml``), suspicious-activity cases (``cases``) and security events,
blocks and login sessions (``security``). Served by ``blueprints/compliance`` and, for a
student's own verification, ``blueprints/wallet/verification.py``."""

from sqlalchemy import func, literal, select

#: The counts the compliance pages show beside their queues and tabs stop here (shown as
#: "1000+"): past it the exact number tells an officer nothing more, and counting every row
#: would make each page cost more as the tables grow.
COUNT_CAP = 1000


def count_upto(entity, *where, correlate=None):
    """A scalar subquery: the rows of ``entity`` that match ``where``, counted up to one more
    than ``COUNT_CAP`` (so a page can tell "1000" from "more"), whatever the table's size.
    ``correlate``: the enclosing query's entity that ``where`` refers to (one count per row)."""
    rows = select(literal(1)).select_from(entity).where(*where).limit(COUNT_CAP + 1)
    if correlate is not None:
        rows = rows.correlate(correlate)
    return select(func.count()).select_from(rows.subquery()).scalar_subquery()
