"""Quiz-like questions get a hint that points to the lesson, never the answer."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.db import db
from portal.learning import demo_content
from portal.learning.assessment.models import (
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizQuestion,
    ShortAnswerMatch,
)
from portal.learning.tutoring import hints
from portal.learning.tutoring.answers import compose_reply
from portal.learning.tutoring.models import ReplyKind, ReplySource
from tests.learning.factories import catalog as factories_catalog
from tests.learning.factories.quiz import add_question
from tests.learning.tutoring.factories.engine import course_with_lessons, seed_demo_courses

GARDEN = {
    "Watering": "# Watering plants\n\nWater tomatoes deeply twice a week. Morning watering keeps leaves dry.\n\n"
                "# Mulch\n\nA layer of straw keeps the soil moist and cool under the plants.",
    "Pests": "# Slugs\n\nSlugs eat young seedlings at night. Beer traps and copper tape keep them off.",
}


@pytest.fixture
def garden(app):
    course, module, lessons = course_with_lessons(GARDEN, title="Gardening basics", module_title="Growing")
    quiz = factories_catalog.make_quiz(course, module=module, points=())
    questions = {
        "single": add_question(quiz, QuestionKind.SINGLE, prompt="Which animal eats young seedlings at night?",
                               options=[("Slugs", True), ("Bees", False), ("Ladybirds", False)]),
        "short": add_question(quiz, QuestionKind.SHORT, prompt="Which material keeps the soil moist and cool?",
                              accepted_answers=["straw", "mulch"], match=ShortAnswerMatch.CASE_INSENSITIVE),
        "numeric": add_question(quiz, QuestionKind.NUMERIC, prompt="How many times a week should tomatoes be watered?",
                                numeric_answer=Decimal("2"), numeric_tolerance=Decimal("0")),
    }
    return course, module, quiz, questions


def assert_no_secret(text: str, secrets) -> None:
    for secret in secrets:
        assert not re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", text, re.IGNORECASE), (secret, text)


@pytest.mark.parametrize(("kind", "question", "secrets"), [
    ("single", "which animal is eating my young seedlings at night?", ["slugs", "slug"]),
    ("short", "what material keeps soil moist and cool?", ["straw", "mulch"]),
    ("numeric", "how many times a week should I water the tomatoes?", ["2", "two", "twice"]),
])
def test_a_reworded_quiz_question_gets_a_hint_without_the_answer(garden, kind, question, secrets):
    course, module, quiz, _questions = garden
    reply = compose_reply(course, question)
    assert reply.kind == ReplyKind.HINT and reply.source == ReplySource.RETRIEVAL
    assert quiz.title in reply.body and "won't give the answer away" in reply.body
    assert reply.topic_module_id == module.id
    assert reply.citations, "a hint points to the lesson"
    assert_no_secret(reply.body, secrets)
    for citation in reply.citations:
        assert_no_secret(citation["heading"] + " " + citation["anchor"].replace("-", " "), secrets)


def test_the_hint_points_to_the_lesson_that_explains_it(garden):
    course, _module, _quiz, _questions = garden
    reply = compose_reply(course, "which animal is eating my young seedlings at night?")
    assert reply.citations[0]["lesson_title"] == "Pests"
    assert "“Pests”" in reply.body


def test_an_unpublished_quiz_or_another_courses_quiz_gives_no_hint(garden):
    course, module, quiz, _questions = garden
    quiz.published = False
    db.session.flush()
    assert compose_reply(course, "which animal is eating my young seedlings at night?").kind == ReplyKind.ANSWER
    other, _m, _l = course_with_lessons({"Other": "Nothing about animals."})
    quiz.published = True
    db.session.flush()
    assert hints.match_quiz_question(other.id, "Which animal eats young seedlings at night?") is None


def test_a_question_that_only_shares_a_few_words_is_not_a_quiz_question(garden):
    course, _module, _quiz, _questions = garden
    assert hints.match_quiz_question(course.id, "how do slugs get into the garden at night?") is None
    assert hints.match_quiz_question(course.id, "seedlings?") is None
    assert compose_reply(course, "do beer traps work against slugs?").kind == ReplyKind.ANSWER


def test_the_match_names_the_question_and_what_must_stay_secret(garden):
    course, module, quiz, questions = garden
    match = hints.match_quiz_question(course.id, "Which animal eats young seedlings at night?")
    assert match is not None and match.question_id == questions["single"].id
    assert match.quiz_id == quiz.id and match.module_id == module.id and match.quiz_title == quiz.title
    assert match.secrets == ("Slugs",) and match.ratio >= hints.MIN_RATIO and match.coverage == 1.0
    assert hints.match_quiz_question(course.id, "how often should tomatoes be watered each week")\
        .secrets == ("2",)


def _demo_questions():
    for course in demo_content.COURSES:
        for quiz in course.quizzes:
            for question in quiz.questions:
                yield course.slug, question.prompt


def test_every_demo_quiz_question_asked_as_is_gets_a_hint_without_its_answer(app):
    courses = seed_demo_courses()
    for slug, prompt in _demo_questions():
        reply = compose_reply(courses[slug], prompt)
        assert reply.kind == ReplyKind.HINT, prompt
        question = db.session.scalar(select(QuizQuestion).join(Quiz).where(
            Quiz.course_id == courses[slug].id, QuizQuestion.prompt == prompt))
        options = db.session.scalars(select(QuestionOption).where(QuestionOption.question_id == question.id,
                                                                  QuestionOption.is_correct.is_(True))).all()
        secrets = [option.text for option in options] + [str(a) for a in question.accepted_answers or []]
        if question.numeric_answer is not None:
            secrets.append(format(question.numeric_answer.normalize(), "f"))
        if question.kind != QuestionKind.TRUE_FALSE:  # "True"/"False" are ordinary words
            assert_no_secret(reply.body, [s for s in secrets if len(s) > 1 or s.isdigit()])
        else:
            assert not re.search(r"\b(true|false)\b", reply.body, re.IGNORECASE), reply.body


@pytest.mark.parametrize(("slug", "question"), [
    ("intro-to-python-programming", "what's the keyword that leaves a loop immediately?"),
    ("intro-to-python-programming", "what does a function return when there is no return statement in its body?"),
    ("personal-finance-foundations", "using the rule of 72, how long does money take to double at 8 percent?"),
    ("data-literacy-charts-and-statistics", "what's the name for the middle value of a sorted data set?"),
])
def test_demo_quiz_questions_in_a_students_words_get_hints(app, slug, question):
    courses = seed_demo_courses()
    reply = compose_reply(courses[slug], question)
    assert reply.kind == ReplyKind.HINT
    for secret in ("break", "None", "9", "median"):
        assert_no_secret(reply.body, [secret])


def test_a_hint_cites_first_the_section_that_teaches_the_quizzed_idea(app):
    """The quiz question's feedback ("// is floor division") steers the search: the first section
    cited is the one on division, not one that merely shares a word with the prompt."""
    courses = seed_demo_courses()
    reply = compose_reply(courses["intro-to-python-programming"], "what does 7 // 2 evaluate to in python?")
    assert reply.kind == ReplyKind.HINT
    first = reply.citations[0]
    assert (first["lesson_title"], first["heading"]) == ("Values and Variables", "Numbers and text"), \
        [(c["lesson_title"], c["heading"]) for c in reply.citations]
    assert "floor division" not in reply.body.lower()  # the feedback steers, it is not quoted
    assert_no_secret(reply.body, ["3"])


def test_the_feedback_is_kept_for_the_search(garden):
    course, _module, _quiz, questions = garden
    questions["single"].feedback = "Slugs feed at night on young seedlings."
    db.session.flush()
    match = hints.match_quiz_question(course.id, "which animal eats young seedlings at night?")
    assert match.explanation == "Slugs feed at night on young seedlings."


@pytest.mark.parametrize(("question", "stem", "options"), [
    ("What does print(7 // 2) output? a) 3.5 b) 3 c) 4", "What does print(7 // 2) output?", ("3.5", "3", "4")),
    ("How often should I water? (a) once a week (b) twice a week", "How often should I water?",
     ("once a week", "twice a week")),
    ("True or false: slugs eat seedlings at night.", "True or false: slugs eat seedlings at night.", ()),
    ("Which of the following keeps the soil moist?", "Which of the following keeps the soil moist?", ()),
    ("Calculate the weekly water for 3 tomato plants.", "Calculate the weekly water for 3 tomato plants.", ()),
])
def test_a_question_phrased_as_a_test_item_is_recognised_with_its_options(question, stem, options):
    item = hints.exam_item(question)
    assert item is not None and item.stem == stem and item.options == options


@pytest.mark.parametrize("question", [
    "how do I keep slugs off my seedlings?", "why should I water in the morning?",
    "what does mulch do for the soil?", "is it a good idea to calculate how much I water?",
])
def test_a_question_in_a_students_own_words_is_not_a_test_item(question):
    assert hints.exam_item(question) is None


def test_a_test_item_that_is_not_a_course_quiz_question_gets_a_hint_naming_no_option(app):
    course, _module, _lessons = course_with_lessons(GARDEN, title="Gardening basics", module_title="Growing")
    question = "Which of these eats young seedlings at night? a) slugs b) bees c) ladybirds"
    reply = compose_reply(course, question)
    assert reply.kind == ReplyKind.HINT
    assert reply.citations and reply.citations[0]["lesson_title"] == "Pests"
    assert "test question" in reply.body and "Revisit “Pests”" in reply.body
    # Any option may be the answer: none is named, neither is the section whose heading is one.
    assert_no_secret(reply.body, ["slugs", "bees", "ladybirds"])
    assert reply.citations[0]["heading"] == ""


def test_a_test_item_about_nothing_the_course_teaches_is_not_found(app):
    course, _module, _lessons = course_with_lessons(GARDEN, title="Gardening basics", module_title="Growing")
    reply = compose_reply(course, "Which of the following is the capital of France? a) Paris b) Rome c) Madrid")
    assert reply.kind == ReplyKind.NOT_FOUND and reply.citations == []


@pytest.mark.parametrize(("text", "fragments"), [
    ("What does print(7 // 2) output?", ["//"]),
    ("If nums = [4, 8, 15], what is nums[-1]?", ["[-1]"]),
    ("what does d.get('b', 0) return and x[1:3]?", [".get(", "[1:3]"]),
    ("How much is $5,000 at 8% after 2 years?", []),
])
def test_code_fragments_of_a_question(text, fragments):
    from portal.learning.tutoring.answers import code_fragments

    assert code_fragments(text) == fragments


CODE = {
    "Numbers": "# Dividing\n\nDivide numbers with a slash.\n\n```python\nwhole = 7 // 2   # floor division\n```",
    "Printing": "# Output\n\nThe print function shows numbers and text on the screen. Print output goes to the "
                "screen, one print call per line of output.",
}


def test_a_test_item_quoting_code_points_first_to_the_section_that_shows_it(app):
    course, _module, _lessons = course_with_lessons(CODE, title="Code basics", module_title="Start")
    reply = compose_reply(course, "What does print(7 // 2) output? a) 3.5 b) 3 c) 4")
    assert reply.kind == ReplyKind.HINT
    # The words ("print", "output") point to the printing lesson; the operator to the other.
    assert reply.citations[0]["lesson_title"] == "Numbers"
    assert "Printing" in [c["lesson_title"] for c in reply.citations]
