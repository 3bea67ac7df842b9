"""Service levels of the compliance work: how long identity verifications wait for a decision,
and how old the open cases are. Three statements whatever the number of rows.

The decisions of a date range (``portal.platform.analytics.queries.DateRange``), and the queues
as they stand now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text

from portal.db import db
from portal.platform.analytics.queries import DateRange

#: (label, lower bound in hours, upper bound in hours or None) of the ageing tables.
AGE_BUCKETS = (("Under a day", 0, 24), ("1 to 3 days", 24, 72), ("3 to 7 days", 72, 168), ("Over 7 days", 168, None))


@dataclass(frozen=True)
class Decisions:
    decision: str
    count: int
    mean_hours: Decimal | None
    median_hours: Decimal | None
    p90_hours: Decimal | None


@dataclass(frozen=True)
class Ageing:
    buckets: list[tuple[str, int]]
    total: int
    oldest_hours: Decimal | None
    overdue: int | None = None  #: cases past their due date (None for verifications)


def _hours(value) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.1"))


_DECISIONS = text("""
SELECT status, count(*),
       avg(extract(epoch FROM "decidedAt" - "submittedAt") / 3600),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "decidedAt" - "submittedAt") / 3600),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM "decidedAt" - "submittedAt") / 3600)
FROM kyc_verifications
WHERE "decidedAt" >= :start AND "decidedAt" < :end AND status IN ('approved', 'rejected', 'revision_requested')
GROUP BY status ORDER BY status""")


def kyc_decisions(period: DateRange) -> list[Decisions]:
    """Time from submission to decision, per decision, over the decisions made in ``period``."""
    rows = db.session.execute(_DECISIONS, {"start": period.start_at, "end": period.end_at})
    return [Decisions(status, count, _hours(mean), _hours(median), _hours(p90))
            for status, count, mean, median, p90 in rows]


def _bucket_columns(column: str) -> str:
    parts = []
    for n, (_, low, high) in enumerate(AGE_BUCKETS):
        upper = f" AND age < {high}" if high is not None else ""
        parts.append(f"count(*) FILTER (WHERE age >= {low}{upper}) AS b{n}")
    return ", ".join(parts) + f", count(*) AS total, max(age) AS oldest{column}"


_KYC_WAITING = text(f"""
SELECT {_bucket_columns("")}
FROM (SELECT extract(epoch FROM :now - "submittedAt") / 3600 AS age FROM kyc_verifications
      WHERE status IN ('submitted', 'awaiting_second')) AS waiting""")

_CASES_OPEN = text(f"""
SELECT {_bucket_columns(", count(*) FILTER (WHERE overdue) AS overdue")}
FROM (SELECT extract(epoch FROM :now - "detectedAt") / 3600 AS age, "dueAt" < :now AS overdue
      FROM suspicious_activities WHERE status <> 'closed') AS open_cases""")


def _ageing(row, with_overdue: bool) -> Ageing:
    counts = list(row[:len(AGE_BUCKETS)])
    rest = row[len(AGE_BUCKETS):]
    return Ageing([(label, count) for (label, _, _), count in zip(AGE_BUCKETS, counts, strict=True)],
                  rest[0], _hours(rest[1]), rest[2] if with_overdue else None)


def kyc_waiting(now: datetime) -> Ageing:
    """The verifications waiting for an officer now, by how long they have waited."""
    return _ageing(db.session.execute(_KYC_WAITING, {"now": now}).one(), False)


def cases_open(now: datetime) -> Ageing:
    """The open cases by age (since detection), and how many are past their due date."""
    return _ageing(db.session.execute(_CASES_OPEN, {"now": now}).one(), True)
