"""The demo course content: shape, limits the learning tables impose, clean Markdown, answerable
questions with correct answers, and rubrics that add up."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import re
import statistics
from decimal import Decimal

import pytest

from portal.learning.assessment.grading import pattern_problem, short_matches
from portal.learning.demo_content import (
    COURSES,
    LEVELS,
    MATCH_MODES,
    QUESTION_KINDS,
    CourseSpec,
    LessonSpec,
    QuestionSpec,
    course_by_slug,
)
from portal.learning.markdown import render_markdown

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RAW_HTML = re.compile(r"<[A-Za-z]")
WORD = re.compile(r"\w+(?:['’-]\w+)*")
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
HEADING = re.compile(r"^#{1,3} \S", re.M)
LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+\.) \S", re.M)

LESSONS = [(course, module, lesson) for course in COURSES for module in course.modules
           for lesson in module.lessons]
QUESTIONS = [(course, quiz, question) for course in COURSES for quiz in course.quizzes
             for question in quiz.questions]


def _lesson_id(item) -> str:
    course, _module, lesson = item
    return f"{course.slug}/{lesson.title}"


def _question_id(item) -> str:
    course, quiz, question = item
    return f"{course.slug}/{quiz.title}/{quiz.questions.index(question) + 1}"


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", markdown)


def _strings(value):
    """Every string anywhere inside a spec."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _strings(getattr(value, field.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _strings(item)


def _question(slug: str, prompt_contains: str) -> QuestionSpec:
    matches = [q for c, _quiz, q in QUESTIONS if c.slug == slug and prompt_contains in q.prompt]
    assert len(matches) == 1, prompt_contains
    return matches[0]


def _lesson(slug: str, title: str) -> LessonSpec:
    return next(lesson for c, _m, lesson in LESSONS if c.slug == slug and lesson.title == title)


# --- courses -----------------------------------------------------------------------------------


def test_the_three_demo_courses():
    assert [(c.title, c.category, c.level) for c in COURSES] == [
        ("Personal Finance Foundations", "Finance", "beginner"),
        ("Introduction to Python Programming", "Computer Science", "beginner"),
        ("Data Literacy: Reading Charts and Statistics", "Data", "intermediate"),
    ]
    assert all(isinstance(c, CourseSpec) for c in COURSES)


def test_slugs_are_unique_url_safe_and_fit_the_column():
    slugs = [c.slug for c in COURSES]
    assert len(set(slugs)) == len(slugs)
    for slug in slugs:
        assert SLUG.fullmatch(slug), slug
        assert len(slug) <= 80


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c.slug)
def test_course_fields_fit_the_schema(course):
    assert 0 < len(course.title) <= 160
    assert 0 < len(course.category) <= 60
    assert course.level in LEVELS
    # The summary is one paragraph of plain prose.
    assert 100 <= len(course.summary) <= 500
    assert "\n" not in course.summary
    assert HEADING.search(course.description) and LIST_ITEM.search(course.description)
    assert len(WORD.findall(course.description)) > len(WORD.findall(course.summary))
    # The estimate covers at least the reading time of the lessons.
    reading_minutes = sum(lesson.estimated_minutes for m in course.modules for lesson in m.lessons)
    assert 1 <= course.estimated_hours <= 1000
    assert course.estimated_hours * 60 >= reading_minutes


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c.slug)
def test_two_or_three_modules_of_two_or_three_lessons(course):
    assert 2 <= len(course.modules) <= 3
    for module in course.modules:
        assert 2 <= len(module.lessons) <= 3, module.title
        assert 0 < len(module.title) <= 160 and 0 < len(module.summary) <= 500
    titles = [lesson.title for m in course.modules for lesson in m.lessons]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c.slug)
def test_no_raw_html_or_placeholder_text_anywhere(course):
    for text in _strings(course):
        assert not RAW_HTML.search(text), text[:80]
        assert "lorem" not in text.lower(), text[:80]
        assert "ipsum" not in text.lower(), text[:80]


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        COURSES[0].title = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        COURSES[0].modules[0].lessons[0].body = ""  # type: ignore[misc]


def test_course_by_slug():
    assert course_by_slug("intro-to-python-programming") is COURSES[1]
    with pytest.raises(KeyError):
        course_by_slug("no-such-course")


# --- lessons -----------------------------------------------------------------------------------


@pytest.mark.parametrize("item", LESSONS, ids=_lesson_id)
def test_lesson_body_is_substantial_clean_markdown(item):
    _course, _module, lesson = item
    body = lesson.body
    assert 0 < len(lesson.title) <= 160
    assert 1 <= lesson.estimated_minutes <= 600
    assert body.count("```") % 2 == 0, "unbalanced code fence"
    prose = _prose(body)
    # 150-400 words, at least 150 of them outside code blocks.
    assert len(WORD.findall(prose)) >= 150
    assert len(WORD.findall(body)) <= 400
    assert len(HEADING.findall(prose)) >= 2
    assert LIST_ITEM.search(prose)
    assert not RAW_HTML.search(body)
    assert "lorem" not in body.lower()


@pytest.mark.parametrize("item", LESSONS, ids=_lesson_id)
def test_lesson_renders_with_its_structure(item):
    body = item[2].body
    html = str(render_markdown(body))
    assert "<h2 id=\"s-" in html
    assert "<li>" in html
    if "\n|---" in body:
        assert "<table>" in html
    if "```" in body:
        assert "<pre>" in html


def test_python_course_lessons_show_fenced_code():
    python = course_by_slug("intro-to-python-programming")
    for module in python.modules:
        for lesson in module.lessons:
            assert PYTHON_BLOCK.search(lesson.body), lesson.title


def test_every_python_snippet_is_valid_python():
    snippets = [block for course in COURSES for text in _strings(course)
                for block in PYTHON_BLOCK.findall(text)]
    assert len(snippets) >= 15
    for snippet in snippets:
        ast.parse(snippet)


# --- quizzes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c.slug)
def test_quizzes_are_attached_and_configured(course):
    assert 1 <= len(course.quizzes) <= 2
    for quiz in course.quizzes:
        assert 0 <= quiz.module_index < len(course.modules)
        assert 0 < len(quiz.title) <= 160 and quiz.description
        assert 1 <= quiz.time_limit_minutes <= 1440
        assert quiz.max_attempts >= 1
        assert 1 <= quiz.passing_score <= 100
        assert 4 <= len(quiz.questions) <= 6
        # A mix of kinds, not one kind repeated.
        assert len({q.kind for q in quiz.questions}) >= 3


def test_every_question_kind_and_match_mode_is_exercised():
    assert {q.kind for _c, _quiz, q in QUESTIONS} == set(QUESTION_KINDS)
    assert {q.match_mode for _c, _quiz, q in QUESTIONS if q.kind == "short"} == set(MATCH_MODES)


@pytest.mark.parametrize("item", QUESTIONS, ids=_question_id)
def test_question_is_well_formed(item):
    _course, _quiz, q = item
    assert q.kind in QUESTION_KINDS
    assert q.prompt.strip()
    assert q.points > 0
    assert q.feedback.strip()
    if q.kind in ("single", "multiple", "true_false"):
        texts = [o.text for o in q.options]
        assert len(set(texts)) == len(texts)
        assert all(0 < len(t) <= 500 and len(o.feedback) <= 500 for t, o in zip(texts, q.options, strict=True))
        correct = [o for o in q.options if o.is_correct]
        wrong = [o for o in q.options if not o.is_correct]
        if q.kind == "single":
            assert len(q.options) >= 3 and len(correct) == 1
        elif q.kind == "true_false":
            assert sorted(texts) == ["False", "True"] and len(correct) == 1
        else:
            assert len(correct) >= 2 and len(wrong) >= 1
    else:
        assert q.options == ()
    if q.kind == "short":
        assert q.accepted_answers
        assert all(a and a == a.strip() for a in q.accepted_answers)
        assert q.match_mode in MATCH_MODES
        assert (q.pattern is not None) == (q.match_mode == "pattern")
    else:
        assert q.accepted_answers == () and q.match_mode is None and q.pattern is None
    if q.kind == "numeric":
        assert isinstance(q.answer, Decimal) and isinstance(q.tolerance, Decimal)
        assert q.tolerance >= 0
    else:
        assert q.answer is None and q.tolerance is None
    assert bool(q.grading_guide.strip()) == (q.kind == "essay")


@pytest.mark.parametrize("item", [i for i in QUESTIONS if i[2].match_mode == "pattern"], ids=_question_id)
def test_answer_pattern_compiles_and_accepts_its_own_answers(item):
    q = item[2]
    pattern = re.compile(q.pattern)
    for answer in q.accepted_answers:
        assert pattern.fullmatch(answer), answer
    assert not pattern.fullmatch("")
    assert not pattern.fullmatch("I don't know")
    assert q.stored_answers == (q.pattern,)


@pytest.mark.parametrize("item", [i for i in QUESTIONS if i[2].kind == "short"], ids=_question_id)
def test_short_answers_are_accepted_by_the_portal_grader(item):
    q = item[2]
    if q.pattern is not None:
        assert pattern_problem(q.pattern) is None
    for answer in q.accepted_answers:
        assert short_matches(answer, q.stored_answers, q.match_mode), answer
        assert short_matches(f"  {answer} ", q.stored_answers, q.match_mode), answer
    assert not short_matches("something else", q.stored_answers, q.match_mode)


def test_stored_answers_are_the_literal_answers_outside_pattern_mode():
    q = _question("data-literacy-charts-and-statistics", "middle value of a sorted")
    assert q.match_mode == "case_insensitive"
    assert q.stored_answers == q.accepted_answers == ("median", "the median")


def test_python_code_questions_print_their_numeric_answer():
    code_questions = [q for c, _quiz, q in QUESTIONS
                      if c.slug == "intro-to-python-programming" and q.kind == "numeric"]
    assert len(code_questions) == 2
    for q in code_questions:
        (code,) = PYTHON_BLOCK.findall(q.prompt)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "question", "exec"), {})  # noqa: S102 - the course's own example
        assert Decimal(out.getvalue().strip()) == q.answer


def test_worked_quiz_answers_are_right():
    compound = _question("personal-finance-foundations", "$2,000 at 4%")
    expected = (Decimal(2000) * Decimal("1.04") ** 3).quantize(Decimal("0.01"))
    assert expected == Decimal("2249.73")
    assert abs(compound.answer - expected) <= compound.tolerance

    fund = _question("personal-finance-foundations", "six months of essentials")
    assert fund.answer == 6 * 1800

    rule_of_72 = _question("personal-finance-foundations", "rule of 72")
    assert [o.text for o in rule_of_72.options if o.is_correct] == [f"About {72 // 8} years"]

    needs = _question("personal-finance-foundations", "$3,000 monthly")
    assert [o.text for o in needs.options if o.is_correct] == ["$600"]

    mean = _question("data-literacy-charts-and-statistics", "mean of 4, 8, 15")
    assert mean.answer == statistics.mean([4, 8, 15, 16, 23, 42])

    growth = _question("data-literacy-charts-and-statistics", "axis starts at 900")
    assert abs(growth.answer - Decimal(200) / Decimal(1000) * 100) <= growth.tolerance


def test_worked_figures_in_lessons_are_right():
    compound = _lesson("personal-finance-foundations", "How Compound Interest Works").body
    for years in (1, 2, 5, 10, 30):
        figure = (Decimal(1000) * Decimal("1.05") ** years).quantize(Decimal("0.01"))
        assert f"${figure:,}" in compound, years
    assert "**$1,500**" in compound and "$128.89" in compound

    debt = _lesson("personal-finance-foundations", "Understanding Debt and Interest Rates").body
    assert f"{(Decimal('1.01') ** 12 - 1) * 100:.2f}%" in debt

    centre = _lesson("data-literacy-charts-and-statistics", "Mean, Median and Mode").body
    hours = [2, 3, 3, 5, 7, 10]
    assert "six days: 2, 3, 3, 5, 7, 10." in centre
    assert f"30 ÷ 6 = **{statistics.mean(hours)}**" in centre
    assert f"(3 + 5) ÷ 2 = **{statistics.median(hours):g}**" in centre
    assert f"Mode: **{statistics.mode(hours)}**" in centre
    salaries = [30, 32, 35, 38, 300]
    assert "30, 32, 35, 38 and 300" in centre
    assert f"Mean: {sum(salaries)} ÷ 5 = **{statistics.mean(salaries)}**" in centre
    assert f"Median: **{statistics.median(salaries)}**" in centre

    spread = _lesson("data-literacy-charts-and-statistics", "Measuring Spread").body
    data = [2, 4, 4, 4, 5, 5, 7, 9]
    assert "Data: 2, 4, 4, 4, 5, 5, 7, 9." in spread
    assert f"√4 = **{statistics.pstdev(data):g}**" in spread
    assert f"about {statistics.stdev(data):.2f}" in spread


# --- assignments -------------------------------------------------------------------------------


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c.slug)
def test_assignment_rubric_adds_up(course):
    assignment = course.assignment
    assert 0 < len(assignment.title) <= 160
    assert HEADING.search(assignment.instructions) and LIST_ITEM.search(assignment.instructions)
    assert assignment.points > 0
    assert 0 <= assignment.module_index < len(course.modules)
    assert 3 <= len(assignment.criteria) <= 4
    assert len({c.title for c in assignment.criteria}) == len(assignment.criteria)
    for criterion in assignment.criteria:
        assert criterion.title and criterion.description
        assert 3 <= len(criterion.levels) <= 4
        points = [level.points for level in criterion.levels]
        # Best level first, each worth strictly less than the one above, none negative.
        assert points == sorted(points, reverse=True) and len(set(points)) == len(points)
        assert points[-1] >= 0
        assert all(level.title and level.description for level in criterion.levels)
    assert sum(c.levels[0].points for c in assignment.criteria) == assignment.points
