"""A pair's rate chart in the shared cache: the second read computes nothing, a rate recorded
through the services (typed by an admin, or imported) redraws it as soon as it commits, and the
entry is the pair's alone, the same for every reader."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from portal.db import db
from portal.db.base import utcnow
from portal.money.exchange import queries, services
from portal.platform.cache import services as cache
from tests.money.factories.exchange import make_pair, make_rate


@pytest.fixture
def admin(make_user):
    return make_user("admin")


def _rates(pair) -> list[Decimal]:
    return [point.rate for point in queries.chart_rows(pair.id)]


def test_the_second_read_comes_from_the_cache(statements):
    pair = make_pair("USD", "AZR")
    make_rate(pair, "10", age_seconds=300)
    make_rate(pair, "11", age_seconds=200)
    with statements() as miss:
        first = queries.chart_rows(pair.id)
    make_rate(pair, "99", age_seconds=100)  # behind the services' back: the kept chart does not see it
    with statements() as hit:
        again = queries.chart_rows(pair.id)
    assert again == first and [p.rate for p in again] == [Decimal("10"), Decimal("11")]
    assert hit.count == 1 < miss.count, hit.statements  # the lookup alone
    assert isinstance(again[0].rate, Decimal) and again[0].observed_at.tzinfo is not None


def test_a_manual_rate_redraws_its_pair_s_chart_only(admin):
    pair, other = make_pair("USD", "AZR"), make_pair("BTC", "USD")
    make_rate(pair, "10", age_seconds=300)
    make_rate(other, "60000", age_seconds=300)
    db.session.commit()
    assert _rates(pair) == [Decimal("10")] and _rates(other) == [Decimal("60000")]
    make_rate(other, "61000", age_seconds=200)  # not through the services
    services.record_manual_rate(admin, pair.id, "12.5")
    assert _rates(pair) == [Decimal("10"), Decimal("12.5")]  # the recording transaction reads around the entry
    db.session.commit()
    assert _rates(pair) == [Decimal("10"), Decimal("12.5")]
    assert _rates(other) == [Decimal("60000")]  # the other pair's chart was kept


def test_an_imported_rate_redraws_the_chart(admin):
    pair = make_pair("USD", "AZR")
    make_rate(pair, "10", age_seconds=3600)
    db.session.commit()
    assert _rates(pair) == [Decimal("10")]
    observed = (utcnow() - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    assert services.import_csv(admin, "rates.csv", f"base,quote,rate,observed_at\nUSD,AZR,12.75,{observed}\n".encode()
                               ).imported == 1
    db.session.commit()
    assert _rates(pair) == [Decimal("10"), Decimal("12.75")]


def test_the_chart_is_public_data_under_a_shared_key(client, login_as):
    """Rates are the same for every wallet user: one shared entry per pair, and two students
    see the same chart."""
    pair = make_pair("USD", "AZR")
    make_rate(pair, "10.5", age_seconds=300)
    assert services.rate_chart_key(pair.id) == cache.shared_key("rate-chart", pair.id)
    pages = []
    for _ in range(2):
        client.post("/auth/logout")
        login_as("student")
        body = client.get(f"/wallet/rates/{pair.id}").get_data(as_text=True)
        chart = body[body.index('<svg class="rate-chart"'):]
        pages.append(chart[:chart.index("</svg>")])
    assert pages[0] == pages[1] and "10.5" in pages[0]
