"""The question editor: more option rows than the form starts with (htmx appends one; without
JavaScript a submit button brings the form back with one more), and a Markdown preview of the
prompt."""

from __future__ import annotations

import re

from portal.accounts.models import Role
from portal.db import db
from portal.learning.assessment.models import QuestionKind
from portal.learning.assessment.services import MAX_OPTIONS
from tests.learning.factories import quiz as fq

HTMX = {"HX-Request": "true"}


def _quiz(login_as):
    owner = login_as(Role.FACULTY)
    quiz = fq.make_quiz(fq.make_course(owner), published=False)
    db.session.commit()
    return quiz


def _rows(html: str) -> int:
    return len(re.findall(r'name="option_text"', html))


def _posted(texts, correct="0", op="add_option", **extra):
    data = {"kind": "single", "prompt": "Which **one**?", "points": "1", "option_text": list(texts),
            "option_feedback": [""] * len(texts), "correct": correct, "op": op}
    data.update(extra)
    return data


def test_the_form_offers_to_add_an_option(client, login_as):
    quiz = _quiz(login_as)
    html = client.get(f"/learning/quizzes/{quiz.id}/questions/new?kind=single").get_data(as_text=True)
    assert _rows(html) == 4
    assert 'id="add-option"' in html and 'name="op" value="add_option"' in html
    assert f"/learning/quizzes/{quiz.id}/questions/option-row?kind=single&amp;index=4" in html


def test_without_js_add_an_option_keeps_what_was_typed_and_adds_a_row(client, login_as):
    quiz = _quiz(login_as)
    texts = ["Paris", "Lyon", "", "Nice"]
    response = client.post(f"/learning/quizzes/{quiz.id}/questions/new", data=_posted(texts, correct="3"))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert _rows(html) == 5
    for text in ("Paris", "Lyon", "Nice"):
        assert f'value="{text}"' in html
    assert re.search(r'id="correct-3" name="correct" value="3"\s+checked', html)
    assert "Which <strong>one</strong>?" in html  # the preview of the prompt
    assert fq.quiz_question_ids(quiz) == []  # nothing saved


def test_six_options_can_be_saved(client, login_as):
    quiz = _quiz(login_as)
    texts = [f"Option {n}" for n in range(1, 7)]
    response = client.post(f"/learning/quizzes/{quiz.id}/questions/new", data=_posted(texts, correct="5", op="save"))
    assert response.status_code == 302
    (question_id,) = fq.quiz_question_ids(quiz)
    options = fq.options_of(db.session.get(fq.QuizQuestion, question_id))
    assert len(options) == 6


def test_the_form_stops_offering_rows_at_the_maximum(client, login_as):
    quiz = _quiz(login_as)
    texts = [f"O{n}" for n in range(MAX_OPTIONS - 1)]
    html = client.post(f"/learning/quizzes/{quiz.id}/questions/new", data=_posted(texts)).get_data(as_text=True)
    assert _rows(html) == MAX_OPTIONS
    assert 'name="op" value="add_option"' not in html
    assert f"at most {MAX_OPTIONS} options" in html


def test_htmx_appends_one_row_and_moves_the_button_on(client, login_as):
    quiz = _quiz(login_as)
    response = client.get(f"/learning/quizzes/{quiz.id}/questions/option-row?kind=multiple&index=4", headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert _rows(html) == 1
    assert 'id="option-4"' in html and 'type="checkbox" id="correct-4" name="correct" value="4"' in html
    assert 'hx-swap-oob="true"' in html and "index=5" in html
    last = client.get(f"/learning/quizzes/{quiz.id}/questions/option-row?kind=single&index={MAX_OPTIONS - 1}",
                      headers=HTMX).get_data(as_text=True)
    assert "add_option" not in last and f"at most {MAX_OPTIONS} options" in last


def test_option_rows_are_refused_past_the_maximum_or_for_other_kinds(client, login_as):
    quiz = _quiz(login_as)
    base = f"/learning/quizzes/{quiz.id}/questions/option-row"
    assert client.get(f"{base}?kind=single&index={MAX_OPTIONS}").status_code == 422
    assert client.get(f"{base}?kind=single&index=x").status_code == 422
    assert client.get(f"{base}?kind=essay&index=2").status_code == 404


def test_option_rows_need_the_right_to_edit_the_quiz(client, login_as, make_user):
    owner = make_user(role=Role.FACULTY)
    quiz = fq.make_quiz(fq.make_course(owner), published=False)
    login_as(Role.FACULTY)
    # Another teacher's unpublished quiz is not shown to exist.
    assert client.get(f"/learning/quizzes/{quiz.id}/questions/option-row?kind=single&index=4").status_code == 404


def test_the_prompt_preview_renders_markdown_safely(client, login_as):
    _quiz(login_as)
    response = client.post("/learning/questions/preview", data={"prompt": "*Why*? <script>x()</script>"},
                           headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<em>Why</em>" in html
    assert "<script>" not in html


def test_editing_a_question_can_add_rows_too(client, login_as):
    quiz = _quiz(login_as)
    question = fq.add_question(quiz, QuestionKind.MULTIPLE, options=[("A", True), ("B", False), ("C", True)])
    db.session.commit()
    html = client.get(f"/learning/questions/{question.id}/edit").get_data(as_text=True)
    assert _rows(html) == 5  # three options and two blank rows
    data = _posted(["A", "B", "C", "", ""], kind="multiple")
    data["correct"] = ["0", "2"]
    html = client.post(f"/learning/questions/{question.id}/edit", data=data).get_data(as_text=True)
    assert _rows(html) == 6
    assert 'id="add-option"' in html
