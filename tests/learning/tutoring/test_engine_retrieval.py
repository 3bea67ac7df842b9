"""Retrieval: stemming in the course's language, OR semantics with ranking, only the courses
asked for and only published ones, a relevance floor, one SQL statement, any input survives."""

from __future__ import annotations

import uuid

import pytest

from portal.learning.education.models import CourseStatus
from portal.learning.tutoring import retrieval
from portal.learning.tutoring.retrieval import or_query_text, search
from tests.learning.tutoring.factories.engine import course_with_lessons

GARDEN = {
    "Watering": "# Watering plants\n\nWater tomatoes deeply twice a week. Morning watering keeps leaves dry.\n\n"
                "# Mulch\n\nA layer of straw keeps the soil moist and cool.",
    "Running a compost heap": "# Starting a heap\n\nMix green and brown material. Turn the heap monthly.\n\n"
                              "# Running it well\n\nA heap that runs hot breaks down faster; a cold heap is slow.",
    "Pests": "# Slugs\n\nSlugs eat young seedlings at night. Beer traps and copper tape keep them off.",
}


@pytest.fixture
def garden(app):
    course, module, lessons = course_with_lessons(GARDEN, title="Gardening basics")
    return course, module, lessons


def titles(hits):
    return [hit.lesson_title for hit in hits]


def test_stemming_running_finds_run(garden):
    course, _module, _lessons = garden
    hits = search([course.id], "why does my compost heap run so cold?")
    assert hits and hits[0].lesson_title == "Running a compost heap"
    assert hits[0].heading == "Running it well" and hits[0].anchor == "s-running-it-well"
    # "runs" in the lesson, "running" in the question: the same stem.
    assert search([course.id], "running hot")[0].heading == "Running it well"


def test_a_natural_question_finds_its_passage_although_not_every_word_is_in_it(garden):
    course, _module, _lessons = garden
    hits = search([course.id], "how often should I be watering my tomato plants in summer?")
    assert hits[0].lesson_title == "Watering" and hits[0].heading == "Watering plants"
    assert hits[0].module_title == "A module" and hits[0].module_id is not None
    assert "tomatoes" in hits[0].snippet and "<" not in hits[0].snippet
    assert "Water tomatoes deeply" in hits[0].body


def test_ranking_puts_the_passage_about_the_question_first(garden):
    course, _module, _lessons = garden
    hits = search([course.id], "what eats my seedlings at night? slugs?")
    assert hits[0].heading == "Slugs"
    assert [hit.rank for hit in hits] == sorted((hit.rank for hit in hits), reverse=True)
    hits = search([course.id], "keep the soil moist with straw mulch")
    assert hits[0].heading == "Mulch"
    assert all(hit.rank < hits[0].rank for hit in hits[1:])


def test_a_french_course_is_stemmed_in_french(app):
    text = {"L'argent": "# Épargner chaque mois\n\nIl faut épargner une petite somme, avant de dépenser.\n\n"
                        "# Le budget\n\nUn budget prévoit les dépenses du mois.\n\n"
                        "# Les dettes\n\nUne dette coûte des intérêts."}
    french, _m, _l = course_with_lessons(text, language="french")
    english, _m, _l = course_with_lessons(text, language="english")
    question = "Pourquoi l'épargne ?"  # épargne and épargner share a stem in French only
    assert [hit.heading for hit in search([french.id], question)] == ["Épargner chaque mois"]
    assert search([english.id], question) == []


def test_only_the_courses_passed_are_searched(garden):
    course, _module, _lessons = garden
    other, _m, _l = course_with_lessons({"Other slugs": "# Slugs\n\nSlugs eat seedlings at night, beer traps help."})
    question = "slugs eat my seedlings at night"
    assert {hit.course_id for hit in search([course.id], question)} == {course.id}
    assert {hit.course_id for hit in search([other.id], question)} == {other.id}
    assert {hit.course_id for hit in search([course.id, other.id], question)} == {course.id, other.id}
    assert search([], question) == [] and search([uuid.uuid4()], question) == []


@pytest.mark.parametrize("status", [CourseStatus.DRAFT, CourseStatus.ARCHIVED])
def test_unpublished_courses_are_never_searched(app, status):
    course, _m, _l = course_with_lessons(GARDEN, status=status)
    assert search([course.id], "slugs eat my seedlings at night") == []


def test_nothing_relevant_finds_nothing(garden):
    course, _module, _lessons = garden
    assert search([course.id], "how do I file my income tax return?") == []
    assert search([course.id], "what is the capital of France?") == []


def test_the_limit_is_kept(garden):
    course, _module, _lessons = garden
    assert len(search([course.id], "heap")) == 2
    assert len(search([course.id], "heap", limit=1)) == 1
    assert search([course.id], "heap", limit=0) == []


def test_one_search_is_one_sql_statement(garden, statements):
    course, _module, _lessons = garden
    with statements() as counter:
        hits = search([course.id], "how often should I water tomatoes?")
    assert hits and counter.count == 1


@pytest.mark.parametrize("question", [
    "", "   ", "?!?", "-", '"', "'", "a & b | !c", "slugs:*", "slugs <-> seedlings", "(((", "\\", "''slugs''",
    "!!!slugs", "x" * 5000, "slugs " * 500, "\x00slugs", "é" * 100, "🙂 slugs", "or or or", "slugs or -slugs",
])
def test_any_input_is_safe(garden, question):
    course, _module, _lessons = garden
    hits = search([course.id], question)
    assert isinstance(hits, list)


def test_the_or_query_has_only_words():
    assert or_query_text('what "is" -this (thing)? a|b & c:*') == "what or is or this or thing or a or b or c"
    assert or_query_text("or OR Or") == ""
    assert len(or_query_text("word " * 500).split(" or ")) == retrieval.MAX_QUESTION_WORDS


def test_a_passage_carries_how_much_of_the_question_its_whole_lesson_covers(app):
    course, _module, _lessons = course_with_lessons({
        "Compost": "# Greens\n\nKitchen scraps rot quickly in the heap.\n\n# Browns\n\nDry leaves add carbon to the heap.",
        "Pruning": "# Roses\n\nCut roses back in early spring.",
    }, title="Compost course", module_title="Soil")
    hits = search([course.id], "scraps leaves", min_score=0, min_coverage=0, lesson_share=0)
    assert {hit.heading for hit in hits} == {"Greens", "Browns"}
    for hit in hits:
        # Each section has one of the two words; the lesson has both.
        assert hit.coverage == pytest.approx(0.5, abs=0.01) and hit.lesson_coverage == pytest.approx(1.0)
        assert hit.passage_rank == pytest.approx(hit.rank)  # lesson_share 0: the passage alone
    # The lesson's title counts for its passages: "compost" is in no section, only in the title.
    (greens,) = search([course.id], "compost scraps", min_score=0, min_coverage=0)
    assert greens.heading == "Greens" and greens.coverage < 0.6 and greens.lesson_coverage == pytest.approx(1.0)
    # Mixed in, the lesson's coverage raises the passage's score above the passage's own.
    assert greens.rank > greens.passage_rank


def test_a_passage_whose_lesson_covers_the_question_is_relevant_at_the_stricter_floor():
    base = dict(passage_id=uuid.uuid4(), lesson_id=uuid.uuid4(), lesson_title="L", module_id=uuid.uuid4(),
                module_title="M", heading="h", anchor="a", snippet="")
    alone = retrieval.Hit(**base, rank=0.2, coverage=0.3, lesson_coverage=0.3, passage_rank=0.2)
    weak = retrieval.Hit(**base, rank=0.25, coverage=0.15, lesson_coverage=0.9, passage_rank=0.1)
    with_lesson = retrieval.Hit(**base, rank=0.35, coverage=0.15, lesson_coverage=0.9, passage_rank=0.1)
    thin_lesson = retrieval.Hit(**base, rank=0.35, coverage=0.15, lesson_coverage=0.3, passage_rank=0.1)
    assert retrieval.relevant(alone) and retrieval.relevant(with_lesson)
    assert not retrieval.relevant(weak) and not retrieval.relevant(thin_lesson)


def test_passages_showing_code_fragments_as_written(app):
    course, _module, _lessons = course_with_lessons({
        "Numbers": "# Dividing\n\n```python\nwhole = 7 // 2\nrest = 7 % 2\n```",
        "Lists": "# Last item\n\n```python\nlast = items[-1]\n```",
        "Words": "# Percent\n\nA hundred percent is all of it.",
    }, title="Code basics", module_title="Start")
    found = retrieval.showing([course.id], ["//", "%"])
    assert [(hit.lesson_title, shown) for hit, shown in found] == [("Numbers", 2)]  # "%" is not a wildcard
    assert [hit.lesson_title for hit, _ in retrieval.showing([course.id], ["[-1]"])] == ["Lists"]
    assert retrieval.showing([course.id], []) == []
