"""The admin analytics dashboard and the compliance service levels: charts with their tables
and CSV, the previous period beside, bad dates answered with a message, statement budgets."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update

from portal.compliance.kyc.models import KycVerification
from portal.db import db
from portal.db.base import utcnow
from portal.platform.analytics.models import Metric
from tests.compliance.factories import verify
from tests.factories import create_user
from tests.learning.factories.catalog import make_course, make_lesson, make_module
from tests.learning.factories.quiz import enroll

#: Three days no other test rolls up, and the three before them.
START = datetime(2029, 4, 10, tzinfo=UTC)
RANGE = "from=2029-04-10&to=2029-04-12"


def _daily(name: str, day: datetime, value, **labels) -> None:
    db.session.add(Metric(name=name, value=Decimal(str(value)), labels=labels, recorded_at=day, period="day"))


def _more(rows: int) -> None:
    """Rollups split by a label: as many more panels and rows as ``rows``."""
    for n in range(rows):
        _daily("tutoring.questions", START + timedelta(days=n % 3), n, batch=str(n))
    db.session.flush()


def _seed() -> None:
    for n, value in enumerate((3, 4, 5)):  # this period: 12 enrolments
        _daily("learning.enrolments", START + timedelta(days=n), value)
    for n, value in enumerate((2, 2, 2)):  # the previous period: 6
        _daily("learning.enrolments", START - timedelta(days=3 - n), value)
    _daily("money.transfer_volume", START, "12.50", currency="USD")
    _daily("money.transfer_volume", START + timedelta(days=1), "0.5", currency="BTC")
    db.session.flush()


def test_the_dashboard_shows_each_figure_with_its_chart_table_csv_and_the_previous_period(client, login_as):
    login_as("admin")
    _seed()
    response = client.get(f"/admin/analytics?{RANGE}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2029-04-07 to 2029-04-09" in page  # the previous period of the same length
    row = page[page.index('href="#chart-learning-enrolments"'):].split("</tr>")[0]
    assert "<td>12</td>" in row and "<td>6</td>" in row and "+100.0 %" in row
    chart = page[page.index('id="chart-learning-enrolments"'):].split("</figure>")[0]
    assert chart.count("<rect ") == 3 and "<polyline" in chart
    assert "<td>2029-04-12</td><td>5</td><td>2029-04-09</td><td>2</td>" in chart  # the table behind the bars
    assert "/admin/analytics/learning.enrolments.csv?from=2029-04-10&amp;to=2029-04-12" in chart
    # A figure split by currency gets a chart per currency.
    assert 'id="chart-money-transfer_volume-USD"' in page and 'id="chart-money-transfer_volume-BTC"' in page


def test_a_chart_s_data_downloads_as_csv(client, login_as):
    login_as("admin")
    _seed()
    response = client.get(f"/admin/analytics/money.transfer_volume:USD.csv?{RANGE}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert 'filename="money-transfer-volume-usd-2029-04-10-2029-04-12.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["day", "money.transfer_volume", "previous_day", "previous_value"]
    assert rows[1:] == [["2029-04-10", "12.5", "2029-04-07", "0"],
                        ["2029-04-11", "0", "2029-04-08", "0"], ["2029-04-12", "0", "2029-04-09", "0"]]


def test_an_unknown_figure_s_csv_is_not_found(client, login_as):
    login_as("admin")
    assert client.get(f"/admin/analytics/nothing.here.csv?{RANGE}").status_code == 404


def test_the_htmx_request_gets_the_results_only(client, login_as):
    login_as("admin")
    response = client.get(f"/admin/analytics?{RANGE}", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="results">') and "<html" not in body
    assert "HX-Request" in response.headers["Vary"]


def test_bad_dates_get_a_clear_message_not_an_error(client, login_as):
    login_as("admin")
    cases = {"from=2029-13-01": "must be written YYYY-MM-DD", "to=yesterday": "&#34;yesterday&#34; is not a date",
             "from=2029-04-12&to=2029-04-10": "start date must be on or before the end date",
             "from=2020-01-01&to=2029-01-01": "at most 366 days"}
    for query, message in cases.items():
        response = client.get(f"/admin/analytics?{query}")
        assert response.status_code == 400, query
        assert message in response.get_data(as_text=True), query
    assert client.get("/admin/analytics.csv").status_code == 404
    assert client.get("/admin/analytics/learning.enrolments.csv?from=bad").status_code == 400


def test_bringing_the_figures_up_to_date_rolls_up_today(client, login_as):
    login_as("admin")
    today = datetime.combine(utcnow().date(), datetime.min.time(), UTC)
    response = client.post("/admin/analytics/refresh", data={"from": "2029-04-10", "to": "2029-04-12"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/analytics?from=2029-04-10&to=2029-04-12")
    count = db.session.scalar(select(func.count()).select_from(Metric).where(
        Metric.period == "day", Metric.recorded_at == today, Metric.name == "learning.enrolments"))
    assert count == 1


def _dashboard_statements(client, statements) -> int:
    url = f"/admin/analytics?{RANGE}"
    client.get(url)
    with statements() as counted:
        assert client.get(url).status_code == 200
    return counted.count


def test_the_dashboard_reads_in_a_few_statements_whatever_the_rollups(client, login_as, statements):
    login_as("admin")
    _seed()
    before = _dashboard_statements(client, statements)
    _more(40)
    after = _dashboard_statements(client, statements)
    assert before <= 12
    assert after == before


# ---------------------------------------------------------------- compliance service levels

def test_the_service_levels_show_review_times_and_ageing(client, login_as):
    login_as("compliance")
    student = create_user("student")
    [row] = verify(student, 1)
    db.session.execute(update(KycVerification).where(KycVerification.id == row.id).values(
        submitted_at=datetime(2029, 5, 5, 6, tzinfo=UTC), decided_at=datetime(2029, 5, 5, 9, tzinfo=UTC)))
    response = client.get("/compliance/sla?from=2029-05-05&to=2029-05-05")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    table = page[page.index('id="kyc-decisions"'):].split("</table>")[0]
    assert "<th scope=\"row\">Approved</th><td>1</td><td>3.0</td><td>3.0</td><td>3.0</td>" in table
    assert 'id="case-ageing"' in page and 'id="kyc-waiting"' in page


def test_the_service_levels_refuse_bad_dates_with_a_message(client, login_as):
    login_as("compliance")
    response = client.get("/compliance/sla?from=05/05/2029")
    assert response.status_code == 400
    assert "must be written YYYY-MM-DD" in response.get_data(as_text=True)
    fragment = client.get("/compliance/sla?from=2029-05-05", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="decisions">')


def test_the_service_levels_page_budget(client, login_as, statements):
    login_as("compliance")
    client.get("/compliance/sla")
    with statements() as counted:
        assert client.get("/compliance/sla").status_code == 200
    for _ in range(3):
        verify(create_user("student"), 1)
    with statements() as again:
        assert client.get("/compliance/sla").status_code == 200
    assert counted.count <= 12 and again.count == counted.count


def test_the_course_page_budget_does_not_grow_with_students(client, login_as, statements):
    teacher = login_as("faculty")
    course = make_course(instructor=teacher, modules=1, lessons_per_module=3)
    url = f"/learning/manage/{course.id}/analytics"
    client.get(url)
    with statements() as counted:
        assert client.get(url).status_code == 200
    module = make_module(course, title=f"More {uuid.uuid4().hex[:4]}")
    make_lesson(module)
    for _ in range(5):
        enroll(create_user("student"), course)
    with statements() as again:
        response = client.get(url)
    assert response.status_code == 200
    assert counted.count <= 12 and again.count == counted.count
    funnel = response.get_data(as_text=True)
    assert '<th scope="row">Enrolled</th><td>5</td>' in funnel


def test_an_admin_s_refresh_counts_rows_the_admin_cannot_read(client, login_as):
    """Enrolments are private to their students and the course's staff: the rollup counts them
    all, as the job does, whoever asked for it."""
    login_as("admin")
    today = datetime.combine(utcnow().date(), datetime.min.time(), UTC)
    client.post("/admin/analytics/refresh")
    before = db.session.scalar(select(Metric.value).where(
        Metric.period == "day", Metric.recorded_at == today, Metric.name == "learning.enrolments"))
    course = make_course()
    for _ in range(2):
        enroll(create_user("student"), course)
    client.post("/admin/analytics/refresh")
    after = db.session.scalar(select(Metric.value).where(
        Metric.period == "day", Metric.recorded_at == today, Metric.name == "learning.enrolments"))
    assert after - before == 2


# ---------------------------------------------------------------- the label filter

def _kyc_seed() -> None:
    _daily("kyc.time_to_decision_hours", START, "5", decision="approved")
    db.session.flush()


def _charts(page: str) -> list[str]:
    return sorted(re.findall(r'<figure class="chart" id="chart-([^"]+)"', page))


def test_a_label_filter_shows_only_the_figures_at_that_value(client, login_as):
    login_as("admin")
    _seed()
    _kyc_seed()
    page = client.get(f"/admin/analytics?{RANGE}").get_data(as_text=True)
    # The choices are the label values the rollups hold.
    for choice in ("currency:BTC", "currency:USD", "decision:approved"):
        assert f'<option value="{choice}" ' in page, choice
    response = client.get(f"/admin/analytics?{RANGE}&label=currency:USD")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="label-filter">currency = USD</strong>' in page
    assert '<option value="currency:USD" selected>' in page
    assert _charts(page) == ["money-top_up_volume-USD", "money-transfer_volume-USD"]
    summary = page[page.index('id="summary"'):page.index("</table>")]
    assert "Transfer volume (USD)" in summary and "12.5" in summary and "BTC" not in summary
    assert "Enrolments" not in summary and "KYC time to decision" not in summary
    # Each chart's CSV is the filtered figure's.
    assert "/admin/analytics/money.transfer_volume:USD.csv?" in page
    decided = client.get(f"/admin/analytics?{RANGE}&label=decision:approved").get_data(as_text=True)
    assert _charts(decided) == ["kyc-time_to_decision_hours-approved"]


def test_a_label_value_with_no_rollups_shows_no_data(client, login_as):
    login_as("admin")
    _seed()
    response = client.get(f"/admin/analytics?{RANGE}&label=currency:ETH")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    summary = page[page.index('id="summary"'):page.index("</table>")]
    assert "Transfer volume (ETH)" in summary and "<td>0</td>" in summary and "12.5" not in summary


def test_bad_labels_get_a_clear_message_not_an_error(client, login_as):
    login_as("admin")
    cases = {"label=colour:red": "Filter by currency or decision", "label=currency": "written as name:value",
             "label=currency:US%20D": "is not one", "label=currency:%3Cscript%3E": "is not one",
             "label=decision:" + "x" * 41: "1 to 40 letters"}
    for query, message in cases.items():
        response = client.get(f"/admin/analytics?{RANGE}&{query}")
        body = response.get_data(as_text=True)
        assert response.status_code == 400, query
        assert message in body, query
        assert "<script>" not in body, query
        assert 'id="label" name="label" aria-invalid="true"' in body, query


def test_the_filtered_dashboard_reads_no_more_statements(client, login_as, statements):
    login_as("admin")
    _seed()
    unfiltered = _dashboard_statements(client, statements)

    def filtered() -> int:
        client.get(f"/admin/analytics?{RANGE}&label=currency:USD")
        with statements() as counted:
            assert client.get(f"/admin/analytics?{RANGE}&label=currency:USD").status_code == 200
        return counted.count

    before = filtered()
    _more(40)
    assert filtered() == before == unfiltered


def test_bringing_the_figures_up_to_date_keeps_the_label_filter(client, login_as):
    login_as("admin")
    response = client.post("/admin/analytics/refresh", data={"from": "2029-04-10", "to": "2029-04-12",
                                                              "label": "currency:USD"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/analytics?from=2029-04-10&to=2029-04-12&label=currency:USD")
    page = client.get(f"/admin/analytics?{RANGE}&label=currency:USD").get_data(as_text=True)
    assert '<input type="hidden" name="label" value="currency:USD">' in page


def test_a_new_date_range_through_htmx_brings_its_own_label_choices(client, login_as):
    """The htmx request swaps the results only; the label filter's choices (the label values of
    the range's rollups) come with them out of band, so a range without BTC no longer offers it."""
    login_as("admin")
    _seed()  # USD on the range's first day, BTC on its second
    htmx = {"HX-Request": "true", "HX-Target": "results"}
    body = client.get(f"/admin/analytics?{RANGE}", headers=htmx).get_data(as_text=True)
    select = body[body.index('<select id="label"'):].split("</select>")[0]
    assert 'hx-swap-oob="true"' in select
    assert '<option value="currency:BTC" ' in select and '<option value="currency:USD" ' in select
    body = client.get("/admin/analytics?from=2029-04-10&to=2029-04-10", headers=htmx).get_data(as_text=True)
    assert body.lstrip().startswith('<div id="results">')
    select = body[body.index('<select id="label"'):].split("</select>")[0]
    assert '<option value="currency:USD" ' in select and "currency:BTC" not in select
    # The whole page has the one select, in its form, not a second one out of band.
    page = client.get(f"/admin/analytics?{RANGE}").get_data(as_text=True)
    assert page.count('<select id="label"') == 1 and "hx-swap-oob" not in page


def test_the_drawn_results_are_reused_until_a_rollup_run_writes_days(app, monkeypatch):
    """A range's charts are drawn once and kept in the shared cache (with the label choices); a
    rollup run that writes daily rows drops them with the figures, so the next page shows the
    new figures. (Read in the test's own transaction: a test request's cache writes go with the
    request's savepoint when the page commits nothing.)"""
    from blueprints.admin.analytics import _results
    from portal.db.context import acting_as
    from portal.platform.analytics import queries, rollups

    _seed()
    db.session.commit()
    period = queries.DateRange(START.date(), (START + timedelta(days=2)).date())
    given = {"start": "2029-04-10", "end": "2029-04-12", "label": ""}
    with app.test_request_context():
        first = _results(period, None, given)
        assert "<td>12</td>" in first["html"] and "currency:USD" in first["choices"]

        def never(*_args, **_kwargs):
            raise AssertionError("drew the results again, where the drawn ones should have been used")

        with monkeypatch.context() as patched:
            patched.setattr(queries, "dashboard", never)
            assert _results(period, None, given) == first
        _daily("tutoring.questions", START, 9)
        with acting_as(rollups.ROLLER, db.session):
            rollups.forget_figures()  # what a run that writes daily rows does when it commits
        db.session.commit()
        html = _results(period, None, given)["html"]
    row = html[html.index('href="#chart-tutoring-questions"'):].split("</tr>")[0]
    assert "<td>9</td>" in row
