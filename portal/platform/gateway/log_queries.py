"""Reads of the request log for the Traffic page: requests per minute, and per route the count,
the 50th, 95th and 99th percentile of the duration, the share of errors and the slowest routes.

Two statements whatever the traffic: one for the per-minute series (minutes without a request
are filled in by ``generate_series``, so the chart has no gaps), one for the routes (PostgreSQL's
``percentile_cont`` over the window's rows of each route).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, text

from portal.db import db
from portal.db.base import utcnow

#: The windows the page offers, in minutes.
WINDOWS = (15, 60, 360, 1440)
#: Routes listed at most (busiest first).
MAX_ROUTES = 50


@dataclass(frozen=True)
class Minute:
    at: datetime
    requests: int
    errors: int


@dataclass(frozen=True)
class RouteFigures:
    kind: str
    method: str
    route: str
    requests: int
    client_errors: int
    server_errors: int
    p50: float
    p95: float
    p99: float
    slowest: int

    @property
    def error_rate(self) -> float:
        """Share of requests answered 5xx (the portal's fault), as a percentage."""
        return 100.0 * self.server_errors / self.requests if self.requests else 0.0

    @property
    def client_error_rate(self) -> float:
        return 100.0 * self.client_errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Traffic:
    since: datetime
    minutes: int
    per_minute: list[Minute]
    routes: list[RouteFigures]

    @property
    def total(self) -> int:
        return sum(m.requests for m in self.per_minute)

    @property
    def peak(self) -> int:
        return max((m.requests for m in self.per_minute), default=0)

    @property
    def slowest(self) -> list[RouteFigures]:
        """The five routes with the highest 95th percentile."""
        return sorted(self.routes, key=lambda r: (-r.p95, r.route))[:5]


_PER_MINUTE = text("""
SELECT m.at, count(l.id) AS requests, count(l.id) FILTER (WHERE l.status >= 500) AS errors
  FROM generate_series(date_trunc('minute', :since), date_trunc('minute', :until), interval '1 minute') AS m(at)
  LEFT JOIN api_logs l ON l."createdAt" >= m.at AND l."createdAt" < m.at + interval '1 minute'
                      AND l."createdAt" >= :since
 GROUP BY m.at ORDER BY m.at
""").bindparams(bindparam("since"), bindparam("until"))

_ROUTES = text("""
SELECT kind, method, route, count(*) AS requests,
       count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS client_errors,
       count(*) FILTER (WHERE status >= 500) AS server_errors,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY "durationMs") AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY "durationMs") AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY "durationMs") AS p99,
       max("durationMs") AS slowest
  FROM api_logs
 WHERE "createdAt" >= :since
 GROUP BY kind, method, route
 ORDER BY count(*) DESC, route, method
 LIMIT :most
""")


def traffic(minutes: int = 60, now: datetime | None = None) -> Traffic:
    """The figures of the last ``minutes`` (one of ``WINDOWS``; anything else means 60)."""
    minutes = minutes if minutes in WINDOWS else 60
    until = now or utcnow()
    since = until - timedelta(minutes=minutes)
    per_minute = [Minute(r.at, r.requests, r.errors)
                  for r in db.session.execute(_PER_MINUTE, {"since": since, "until": until})]
    routes = [RouteFigures(r.kind, r.method, r.route, r.requests, r.client_errors, r.server_errors,
                           float(r.p50), float(r.p95), float(r.p99), r.slowest)
              for r in db.session.execute(_ROUTES, {"since": since, "most": MAX_ROUTES})]
    return Traffic(since, minutes, per_minute, routes)
