"""The gradebook page's statement count stays within budget and does not grow with the course."""

from __future__ import annotations

from portal.learning.assessment.gradebook import CSV_ROWS_PER_CHUNK
from tests.factories import PASSWORD
from tests.learning.factories.assign import bulk_course

BUDGET = 12


def _count(app, statements, owner, course) -> tuple[int, str]:
    client = app.test_client()
    client.post("/auth/login", data={"email": owner.email, "password": PASSWORD})
    url = f"/learning/courses/{course.id}/gradebook"  # read before counting: a request expires the test's rows
    client.get(url)  # warm up (first-use caches)
    with statements() as counter:
        response = client.get(url)
    assert response.status_code == 200
    return counter.count, response.get_data(as_text=True)


def test_gradebook_statement_budget(app, statements, make_user):
    owner = make_user(role="faculty")
    small = bulk_course(owner, students=5, assignments=2, quizzes=1)
    large = bulk_course(owner, students=500, assignments=20, quizzes=10)
    small_count, small_body = _count(app, statements, owner, small)
    large_count, large_body = _count(app, statements, owner, large)
    assert small_body.count('<th scope="row">') == 5
    assert large_body.count('<th scope="row">') == 50  # the first page of 500 students
    assert large_body.count('class="item-head') == 30 and "Show more students" in large_body
    assert large_count <= BUDGET, large_count
    assert large_count == small_count

    # The streamed CSV export: every student, in as many statements for 500 as for 5.
    client = app.test_client()
    client.post("/auth/login", data={"email": owner.email, "password": PASSWORD})

    def export(course) -> tuple[int, list[str]]:
        url = f"/learning/courses/{course.id}/gradebook.csv"
        with statements() as counter:
            response = client.get(url)
            chunks = [chunk.decode() for chunk in response.response]
        return counter.count, chunks

    small_export, _ = export(small)
    large_export, chunks = export(large)
    lines = "".join(chunks).splitlines()
    assert len(lines) == 501 and lines[0].count(",") == 2 + 30 + 4
    assert large_export == small_export <= BUDGET
    # Streamed in chunks of a bounded number of students, never the whole course at once (nor a
    # write per line): the header, then 100 students per chunk.
    assert [chunk.count("\n") for chunk in chunks] == [1] + [CSV_ROWS_PER_CHUNK] * 5
