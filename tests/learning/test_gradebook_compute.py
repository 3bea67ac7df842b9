"""The gradebook: weights, drop lowest, letters, overrides, the kept ``gradebooks`` row, CSV."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.errors import DomainError, Forbidden
from portal.learning.assessment import gradebook
from portal.learning.assessment.gradebook import ASSIGNMENTS, QUIZZES, Item, Scheme, compute
from portal.learning.assessment.models import AttemptScoring, Gradebook, GradebookStatus
from portal.learning.education.models import EnrollmentStatus
from tests.learning.factories.assign import (
    enroll,
    graded_attempt,
    make_assignment,
    make_course,
    make_quiz,
    release_grade,
)


def _items(assignments=(), quizzes=0):
    return ([Item(ASSIGNMENTS, uuid.uuid4(), f"A{i}", Decimal(p)) for i, p in enumerate(assignments)]
            + [Item(QUIZZES, uuid.uuid4(), f"Q{i}", None) for i in range(quizzes)])


def test_default_scheme():
    scheme = Scheme.from_course({})
    assert scheme.weights == {ASSIGNMENTS: 50, QUIZZES: 50}
    assert [name for name, _ in scheme.letters] == ["A", "B", "C", "D", "F"]
    assert [scheme.letter(Decimal(p)) for p in ("90", "89.99", "80", "70", "60", "59.99", "0")] == \
        ["A", "B", "B", "C", "D", "F", "F"]
    assert scheme.letter(None) is None


def test_weighted_categories():
    items = _items(assignments=("10", "20"), quizzes=2)
    a1, a2, q1, q2 = items
    scheme = Scheme.from_course({"weights": {"assignments": 60, "quizzes": 40}})
    result = compute(scheme, items, {str(a1.id): Decimal(8), str(a2.id): Decimal(10)},
                     {str(q1.id): Decimal(100), str(q2.id): Decimal(50)})
    # assignments: mean(80%, 50%) = 65; quizzes: mean(100, 50) = 75; 0.6*65 + 0.4*75 = 69
    assert result.categories == {ASSIGNMENTS: Decimal("65.00"), QUIZZES: Decimal("75.00")}
    assert result.percent == Decimal("69.00") and result.letter == "D" and result.counted == 4


def test_only_graded_items_count_and_weights_rescale():
    items = _items(assignments=("10",), quizzes=1)
    a1, q1 = items
    result = compute(Scheme.from_course({}), items, {str(a1.id): Decimal("7.5")}, {})
    assert result.percent == Decimal("75.00") and result.categories[QUIZZES] is None
    empty = compute(Scheme.from_course({}), items, {}, {})
    assert empty.percent is None and empty.letter is None


def test_drop_lowest_never_drops_the_last_item():
    items = _items(assignments=("10", "10", "10"))
    a1, a2, a3 = items
    scheme = Scheme.from_course({"drop_lowest": {"assignments": 1}})
    result = compute(scheme, items, {str(a1.id): Decimal(2), str(a2.id): Decimal(9), str(a3.id): Decimal(7)}, {})
    assert result.percent == Decimal("80.00") and result.dropped == {(ASSIGNMENTS, a1.id)}
    alone = compute(Scheme.from_course({"drop_lowest": {"assignments": 5}}), items, {str(a1.id): Decimal(2)}, {})
    assert alone.percent == Decimal("20.00") and not alone.dropped


def test_letter_scale_per_course():
    scheme = Scheme.from_course({"letters": [["P", 50], ["HD", 85], ["D", 75], ["C", 65]]})
    assert [name for name, _ in scheme.letters] == ["HD", "D", "C", "P", "F"]  # sorted, F added at 0
    assert scheme.letter(Decimal(86)) == "HD" and scheme.letter(Decimal(55)) == "P" and scheme.letter(Decimal(10)) == "F"
    assert scheme.passing(Decimal(50)) and not scheme.passing(Decimal(49))


def test_validate_grading_settings():
    ok = gradebook.validate_grading({"weights": {"assignments": 70, "quizzes": 30}, "drop_lowest": {"quizzes": 1}})
    assert ok["weights"] == {"assignments": 70.0, "quizzes": 30.0} and ok["drop_lowest"]["quizzes"] == 1
    for bad in ({"weights": {"assignments": 70, "quizzes": 70}}, {"weights": {"assignments": "x"}},
                {"weights": {"assignments": 50, "quizzes": 50}, "drop_lowest": {"quizzes": -1}}):
        with pytest.raises(DomainError):
            gradebook.validate_grading(bad)


@pytest.fixture
def course_setup(make_user):
    owner = make_user(role="faculty")
    student = make_user(role="student")
    course = make_course(owner, grading={"weights": {"assignments": 60, "quizzes": 40}})
    enroll(course, student)
    return owner, student, course


def test_recompute_keeps_the_row_current(course_setup):
    owner, student, course = course_setup
    a1 = make_assignment(course, points=Decimal(20))
    make_assignment(course, published=False)  # not an item
    quiz = make_quiz(course, scoring=AttemptScoring.LATEST)
    release_grade(a1, student, 15)
    graded_attempt(quiz, student, 90, number=1)
    graded_attempt(quiz, student, 40, number=2)  # the latest counts
    row = gradebook.recompute(course.id, student.id)
    # 0.6 * 75 + 0.4 * 40 = 61
    assert row.percent == Decimal("61.00") and row.letter == "D" and row.status == GradebookStatus.PASSING
    graded_attempt(quiz, student, 100, number=3)
    row = gradebook.recompute(course.id, student.id)
    assert row.percent == Decimal("85.00") and row.letter == "B"
    rows = list(db.session.scalars(select(Gradebook).where(Gradebook.course_id == course.id)))
    assert len(rows) == 1  # updated, not duplicated


def test_quiz_scoring_rules_match_the_quiz_service(course_setup):
    from portal.learning.assessment.services import quiz_score

    owner, student, course = course_setup
    for scoring in AttemptScoring:
        quiz = make_quiz(course, scoring=scoring)
        for number, percent in enumerate(("50", "80", "65.55"), start=1):
            graded_attempt(quiz, student, percent, number=number)
        page = gradebook.gradebook_page(owner, course.id)
        (row,) = page.page.items
        assert row.quiz_percents[str(quiz.id)] == quiz_score(student, quiz).percent, scoring


def test_status_failing_in_progress_and_completed(course_setup, make_user):
    owner, student, course = course_setup
    assignment = make_assignment(course)
    assert gradebook.recompute(course.id, student.id).status == GradebookStatus.IN_PROGRESS
    release_grade(assignment, student, 3)
    assert gradebook.recompute(course.id, student.id).status == GradebookStatus.FAILING
    done = make_user(role="student")
    enroll(course, done, EnrollmentStatus.COMPLETED)
    release_grade(assignment, done, 9)
    assert gradebook.recompute(course.id, done.id).status == GradebookStatus.COMPLETED
    assert gradebook.recompute(course.id, make_user(role="student").id) is None  # not enrolled


def test_override_needs_a_reason_and_changes_the_letter(course_setup, make_user):
    owner, student, course = course_setup
    release_grade(make_assignment(course), student, 5)
    with pytest.raises(DomainError) as caught:
        gradebook.set_override(owner, course.id, student.id, Decimal(75), "  ")
    assert caught.value.field == "reason"
    with pytest.raises(DomainError):
        gradebook.set_override(owner, course.id, student.id, Decimal(101), "typo")
    with pytest.raises(Forbidden):
        gradebook.set_override(make_user(role="faculty"), course.id, student.id, Decimal(75), "no")
    row = gradebook.set_override(owner, course.id, student.id, Decimal(75), "Medical certificate")
    assert row.percent == Decimal("50.00") and row.override_percent == Decimal("75.00")
    assert row.letter == "C" and row.status == GradebookStatus.PASSING
    # A later release keeps the override.
    row = gradebook.recompute(course.id, student.id)
    assert row.override_reason == "Medical certificate" and row.letter == "C"
    row = gradebook.set_override(owner, course.id, student.id, None, None)
    assert row.override_percent is None and row.override_reason is None and row.letter == "F"


def test_unreleased_grades_are_not_in_the_gradebook(course_setup):
    from portal.learning.lms.models import Grade
    from tests.learning.factories.assign import make_submission

    owner, student, course = course_setup
    assignment = make_assignment(course)
    submission = make_submission(assignment, student)
    db.session.add(Grade(submission_id=submission.id, assignment_id=assignment.id, user_id=student.id,
                         raw_score=Decimal(9), penalty=Decimal(0), score=Decimal(9), feedback=""))
    db.session.flush()
    (row,) = gradebook.gradebook_page(owner, course.id).page.items
    assert row.assignment_scores == {} and row.result.percent is None


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2", "'-2"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("Ada", "Ada"), ("", ""), (None, ""), (Decimal("7.50"), "7.50"),
])
def test_csv_cells_are_guarded_against_formulas(value, expected):
    assert gradebook.csv_safe(value) == expected


def test_csv_export_streams_guarded_rows(course_setup, make_user):
    owner, student, course = course_setup
    sneaky = make_user(role="student", full_name="=HYPERLINK(\"http://evil\")")
    enroll(course, sneaky)
    assignment = make_assignment(course, title="-Essay")
    release_grade(assignment, student, 8)
    lines = gradebook.export_csv(owner, course.id, batch=1)
    assert not isinstance(lines, list) and iter(lines) is lines  # a generator, not a built list
    rows = list(csv.reader(io.StringIO("".join(lines))))
    assert rows[0][2] == "'-Essay (assignment)"
    by_email = {row[1]: row for row in rows[1:]}
    assert by_email[sneaky.email][0].startswith("'=HYPERLINK")
    assert by_email[student.email][2] == "8.00" and by_email[student.email][-1] == "B"
    with pytest.raises(Forbidden):
        gradebook.export_csv(make_user(role="faculty"), course.id)


def test_csv_export_writes_every_percentage_and_score_with_two_places(course_setup, make_user):
    """Quiz percentages come from the database's JSON, computed ones from arithmetic, overrides
    from a form: whatever their source, each number has one format (two places)."""
    owner, student, course = course_setup
    zero = make_user(role="student")
    enroll(course, zero)
    assignment = make_assignment(course, points=Decimal(10))
    release_grade(assignment, student, 10)
    release_grade(assignment, zero, 0)
    quiz = make_quiz(course)
    graded_attempt(quiz, student, 100)
    graded_attempt(quiz, zero, 0)
    gradebook.set_override(owner, course.id, student.id, Decimal(100), "Extra project")

    rows = list(csv.reader(io.StringIO("".join(gradebook.export_csv(owner, course.id)))))
    header, by_email = rows[0], {row[1]: row for row in rows[1:]}
    numeric = [i for i, title in enumerate(header) if title.endswith(("(assignment)", "(quiz)", "%"))]
    assert len(numeric) == 5  # the assignment, the quiz, computed, override and final
    assert [by_email[student.email][i] for i in numeric] == ["10.00", "100.00", "100.00", "100.00", "100.00"]
    # a zero is written as a number, not left empty; no override is an empty cell
    assert [by_email[zero.email][i] for i in numeric] == ["0.00", "0.00", "0.00", "", "0.00"]


def test_gradebook_item_titles_wrap_instead_of_being_cut():
    """The column titles of the gradebook wrap in their column (the page was cutting them at
    9rem with an ellipsis however much room there was)."""
    import re

    from portal.config import PROJECT_ROOT

    css = re.sub(r"/\*.*?\*/", "", (PROJECT_ROOT / "static" / "css" / "app.css").read_text(), flags=re.S)
    rules = {selector.strip(): body for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)}
    title = rules[".item-head span"]
    assert "text-overflow" not in title and "max-width" not in title
    head = rules[".gradebook th.item-head"]
    assert "white-space: normal" in head  # the table's nowrap does not hold the title on one line
