"""Screening pages: every route for every role, with and without htmx; the list's statement
budget; screening on demand; the decision; the watchlist import page with its errors."""

from __future__ import annotations

import io
import re
import uuid
from datetime import date

import pytest
from sqlalchemy import select

from portal.compliance.aml import screening, watchlist
from portal.compliance.aml.models import AmlCheck, AmlStatus, WatchlistEntry
from portal.compliance.cases.models import SuspiciousActivity
from portal.db import db
from tests.compliance.factories import verify
from tests.factories import create_user

HTMX = {"HX-Request": "true"}
HEADER = "name,aliases,birth_date,country,list_source,kind\n"


@pytest.fixture
def sample():
    return watchlist.load_sample(None)


@pytest.fixture
def pending(sample):
    student = create_user("student", full_name="Sergey Zlatogorov")
    return screening.screen_user(student.id, "Sergey Zlatogorov", date(1958, 11, 2), "RU")


def _routes(check_id) -> list[tuple[str, str, dict, str | None]]:
    """(method, url, form, the permission's lowest role: compliance or admin)."""
    return [
        ("GET", "/compliance/screening", {}, "compliance"),
        ("GET", "/compliance/screening?status=pending_review", {}, "compliance"),
        ("GET", "/compliance/screening/new", {}, "compliance"),
        ("POST", "/compliance/screening/new", {"email": "nobody@tests.example"}, "compliance"),
        ("GET", f"/compliance/screening/{check_id}", {}, "compliance"),
        ("POST", f"/compliance/screening/{check_id}/review", {"decision": "confirmed", "reason": "short"},
         "compliance"),
        ("GET", "/compliance/screening/watchlist", {}, "admin"),
        ("POST", "/compliance/screening/watchlist", {}, "admin"),
        ("POST", "/compliance/screening/watchlist/sample", {}, "admin"),
    ]


ROLES = ["anonymous", "student", "faculty", "compliance", "admin"]
ALLOWED = {"compliance": {"compliance"}, "admin": {"compliance", "admin"}}


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("role", ROLES)
def test_every_route_for_every_role(client, login_as, pending, role, htmx):
    if role != "anonymous":
        login_as(role)
    headers = HTMX if htmx else {}
    for method, url, form, lowest in _routes(pending.id):
        response = client.open(url, method=method, data=form, headers=headers)
        allowed = role == "admin" or (role == "compliance" and lowest == "compliance")
        label = f"{role} {method} {url} htmx={htmx}"
        if role == "anonymous":
            assert response.status_code == (401 if htmx else 302), label
            continue
        if not allowed:
            assert response.status_code == 403, label
            assert "Sergey" not in response.get_data(as_text=True), label
            continue
        if method == "GET":
            expected = 200
        elif url.endswith("/watchlist/sample"):  # loaded: back to the page, or an empty htmx answer
            expected = 204 if htmx else 302
        else:  # the form as sent is incomplete: refused with its messages
            expected = 422
        assert response.status_code == expected, (label, response.status_code)


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_unknown_checks_are_404(client, login_as, role):
    login_as(role)
    missing = uuid.uuid4()
    assert client.get(f"/compliance/screening/{missing}").status_code == 404
    response = client.post(f"/compliance/screening/{missing}/review",
                           data={"decision": "confirmed", "reason": "A long enough reason"})
    assert response.status_code == 404


def test_the_list_shows_pending_first_with_filters(client, login_as, sample):
    login_as("compliance")
    student = create_user("student", full_name="Clear Student")
    clear = screening.screen_user(student.id, "Clear Student", None, None)
    hit = screening.screen_user(student.id, "Layla Nasrallahni", None, None)
    body = client.get("/compliance/screening").get_data(as_text=True)
    assert body.index(f"check-{hit.id}") < body.index(f"check-{clear.id}")
    assert "Pending review" in body and "Layla Nasrallahni" in body
    assert 'aria-current="page"' in body
    body = client.get("/compliance/screening?status=clear").get_data(as_text=True)
    assert f"check-{clear.id}" in body and f"check-{hit.id}" not in body
    fragment = client.get("/compliance/screening?status=pending_review", headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="results">') and "<html" not in fragment
    assert f"check-{hit.id}" in fragment


def test_the_list_pages_with_a_cursor(client, login_as, sample):
    login_as("compliance")
    student = create_user("student")
    made = [screening.screen_user(student.id, "Layla Nasrallahni" if i % 2 else "Nobody Known", None, None)
            for i in range(30)]
    first = client.get("/compliance/screening").get_data(as_text=True)
    cursor = re.search(r'after=([A-Za-z0-9_\-]+)', first).group(1)
    second = client.get(f"/compliance/screening?after={cursor}", headers=HTMX).get_data(as_text=True)
    seen = set(re.findall(r'id="check-([0-9a-f-]{36})"', first)) | set(re.findall(r'id="check-([0-9a-f-]{36})"', second))
    assert seen == {str(c.id) for c in made}
    assert "<html" not in second and "<tr" in second


def test_the_list_page_statement_budget(client, login_as, sample, statements):
    login_as("compliance")
    student = create_user("student")
    for _ in range(3):
        screening.screen_user(student.id, "Layla Nasrallahni", None, None)
    with statements() as few:
        assert client.get("/compliance/screening").status_code == 200
    for i in range(40):
        screening.screen_user(student.id, "Sergey Zlatogorov" if i % 2 else "Someone Else", None, None)
    with statements() as many:
        assert client.get("/compliance/screening").status_code == 200
    # Who is asking, then the list: its two parts and the tabs' counts in one statement.
    assert many.count == few.count == 2, many.statements
    with statements() as fragment:
        assert client.get("/compliance/screening?status=clear", headers=HTMX).status_code == 200
    assert fragment.count == 2, fragment.statements


def test_the_check_page_statement_budget(client, login_as, pending, statements):
    login_as("compliance")
    url = f"/compliance/screening/{pending.id}"
    with statements() as counter:
        assert client.get(url).status_code == 200
    assert counter.count == 2, counter.statements


def test_the_tabs_count_up_to_the_cap(client, login_as, sample, count_cap):
    login_as("compliance")
    student = create_user("student")
    for _ in range(5):
        screening.screen_user(student.id, "Layla Nasrallahni", None, None)
    count_cap(3)
    page = client.get("/compliance/screening").get_data(as_text=True)
    tabs = dict(re.findall(r'status=(\w+)"[^>]*>[^<]+<small class="aml-count">([^<]+)</small>', page))
    assert tabs["all"] == tabs["pending_review"] == "3+", tabs


def test_each_row_sums_up_its_hits(client, login_as, sample):
    login_as("compliance")
    student = create_user("student")
    check = screening.screen_user(student.id, "Sergey Zlatogorov", date(1958, 11, 2), "RU")
    hits = check.hits
    assert hits
    page = client.get("/compliance/screening?status=pending_review").get_data(as_text=True)
    row = page[page.index(f'id="check-{check.id}"'):]
    row = row[:row.index("</tr>")]
    expected = f"{len(hits)}: {hits[0]['name']}"
    assert expected in row
    assert (f"and {len(hits) - 1} more" in row) == (len(hits) > 1)


def test_the_check_page_explains_each_hit_side_by_side(client, login_as, pending):
    login_as("compliance")
    body = client.get(f"/compliance/screening/{pending.id}").get_data(as_text=True)
    assert "Sergei Petrovich Zlatogorov" in body and "alias of Sergei Petrovich Zlatogorov" in body
    assert "Sample sanctions list" in body
    assert "Same date" in body and "1958-11-02" in body
    assert "name score 100.0" in body
    assert "Name parts:" in body and "zlatogorov / zlatogorov: same (100)" in body
    assert 'name="decision"' in body and 'name="reason"' in body


def test_an_officer_confirms_with_htmx_and_a_case_opens(client, login_as, pending):
    officer = login_as("compliance")
    response = client.post(f"/compliance/screening/{pending.id}/review",
                           data={"decision": "confirmed", "reason": "Same name, birth date and country."},
                           headers=HTMX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="decision"') and "Match confirmed" in body
    # The header's status badge is swapped out of band.
    assert re.search(r'<span id="check-status" hx-swap-oob="true">\s*<span class="status status-aml-confirmed">', body)
    assert response.headers["HX-Trigger"] == "screening-changed"
    check = db.session.execute(select(AmlCheck).where(AmlCheck.id == pending.id)
                               .execution_options(populate_existing=True)).scalar_one()
    assert check.status == AmlStatus.CONFIRMED and check.reviewed_by_id == officer.id
    assert db.session.scalar(select(SuspiciousActivity).where(SuspiciousActivity.user_id == pending.user_id))


def test_a_decision_without_reason_shows_the_message_and_moves_nothing(client, login_as, pending):
    login_as("compliance")
    response = client.post(f"/compliance/screening/{pending.id}/review", data={"decision": "false_positive"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "reason-error" in body and "Give the reason" in body
    assert re.search(r'value="false_positive"[^>]*checked', body)
    assert not re.search(r'value="confirmed"[^>]*checked', body)
    assert db.session.get(AmlCheck, pending.id).status == AmlStatus.PENDING_REVIEW


def test_a_reason_with_a_nul_is_refused_not_a_500(client, login_as, pending):
    login_as("compliance")
    response = client.post(f"/compliance/screening/{pending.id}/review",
                           data={"decision": "confirmed", "reason": "A long reason\x00 with a NUL"})
    # Refused before the view, as every request carrying a NUL is (portal/app.py).
    assert response.status_code == 400 and "contains a NUL character" in response.get_data(as_text=True)
    response = client.post(f"/compliance/screening/{pending.id}/review",
                           data={"decision": "confirmed", "reason": "A long reason\x01 with a control"})
    assert response.status_code == 422 and "control character" in response.get_data(as_text=True)


def test_a_decided_check_cannot_be_decided_again(client, login_as, pending):
    login_as("compliance")
    data = {"decision": "false_positive", "reason": "A namesake: a different person."}
    assert client.post(f"/compliance/screening/{pending.id}/review", data=data).status_code == 302
    response = client.post(f"/compliance/screening/{pending.id}/review", data={**data, "decision": "confirmed"})
    assert response.status_code == 409
    assert "not waiting for review" in response.get_data(as_text=True)
    page = client.get(f"/compliance/screening/{pending.id}").get_data(as_text=True)
    assert "A namesake: a different person." in page and 'name="decision"' not in page


def test_screening_on_demand_redirects_to_the_check(client, login_as, sample):
    login_as("compliance")
    student = create_user("student", full_name="Ordinary Student")
    verify(student, 1, country="UA", legal_name="Oksana Tremblenko")
    response = client.post("/compliance/screening/new", data={"email": student.email, "threshold": ""})
    assert response.status_code == 302
    check = db.session.scalar(select(AmlCheck).where(AmlCheck.user_id == student.id))
    assert response.headers["Location"].endswith(f"/compliance/screening/{check.id}")
    assert check.screened_name == "Oksana Tremblenko" and check.status == AmlStatus.PENDING_REVIEW
    htmx = client.post("/compliance/screening/new", data={"email": student.email}, headers=HTMX)
    assert htmx.status_code == 204 and "/compliance/screening/" in htmx.headers["HX-Location"]


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"email": ""}, "email-error", "Enter the student"),
    ({"email": "nobody@tests.example"}, "email-error", "No student has that e-mail"),
    ({"email": "x@tests.example", "threshold": "40"}, "threshold-error", "between 50 and 100"),
    ({"email": "x@tests.example", "threshold": "lots"}, "threshold-error", "must be a number"),
    ({"email": "ctl\x01@tests.example"}, "email-error", "not an e-mail address"),
    ({"email": "x@tests.example", "threshold": "9\x010"}, "threshold-error", "must be a number"),
])
def test_screening_on_demand_errors(client, login_as, sample, form, field, message):
    login_as("compliance")
    response = client.post("/compliance/screening/new", data=form, headers=HTMX)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert field in body and message in body
    assert body.lstrip().startswith('<section id="screen-form"')
    assert db.session.scalar(select(AmlCheck.id).limit(1)) is None


def test_the_import_page_lists_every_problem_and_keeps_the_list(client, login_as, sample):
    login_as("admin")
    content = HEADER + "Good One,,,,L,pep\nBad Kind,,,,L,villain\n,,,,L,pep\n"
    response = client.post("/compliance/screening/watchlist",
                           data={"file": (io.BytesIO(content.encode()), "list.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "2 problems" in body and "Nothing was changed" in body
    assert "<td>3</td><td>The kind &#39;villain&#39; is not sanction or pep.</td>" in body
    assert "<td>4</td><td>The name is empty.</td>" in body
    assert db.session.query(WatchlistEntry).count() == sample.imported


def test_an_admin_imports_a_file(client, login_as, sample):
    login_as("admin")
    content = HEADER + "Good One,,,,L,pep\nGood Two,,,,L,sanction\n"
    response = client.post("/compliance/screening/watchlist",
                           data={"file": (io.BytesIO(content.encode()), "list.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 302
    assert sorted(e.name for e in db.session.scalars(select(WatchlistEntry))) == ["Good One", "Good Two"]
    page = client.get("/compliance/screening/watchlist").get_data(as_text=True)
    assert "replaced the previous " + str(sample.imported) in page
    assert "<strong>2</strong> entries" in page


def test_an_import_without_a_file_says_so(client, login_as):
    login_as("admin")
    response = client.post("/compliance/screening/watchlist", data={}, content_type="multipart/form-data")
    assert response.status_code == 422 and "Choose a CSV file" in response.get_data(as_text=True)


def test_the_sample_can_be_loaded_from_the_page(client, login_as):
    login_as("admin")
    assert client.post("/compliance/screening/watchlist/sample").status_code == 302
    assert db.session.query(WatchlistEntry).count() > 30


@pytest.mark.parametrize(("role", "shown"), [("compliance", False), ("admin", True)])
def test_only_admins_see_the_import_link(client, login_as, sample, role, shown):
    login_as(role)
    assert ("/compliance/screening/watchlist" in client.get("/compliance/screening").get_data(as_text=True)) is shown


def test_a_check_with_sparse_hits_still_renders(client, login_as, sample):
    from decimal import Decimal

    from portal.compliance.aml.models import AmlTrigger

    login_as("compliance")
    student = create_user("student")
    check = AmlCheck(user_id=student.id, trigger=AmlTrigger.ON_DEMAND, screened_name="Someone", threshold=Decimal(85),
                     top_score=Decimal(90), status=AmlStatus.PENDING_REVIEW,
                     hits=[{"entryId": "x", "name": "Someone Listed", "score": 90.0}, "not a hit"])
    db.session.add(check)
    db.session.flush()
    response = client.get(f"/compliance/screening/{check.id}")
    assert response.status_code == 200
    assert "Someone Listed" in response.get_data(as_text=True)
