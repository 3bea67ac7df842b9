"""Query expansion: a question's words with WordNet's related words, offline."""

from __future__ import annotations

import pytest

from portal.learning.tutoring import expansion
from portal.learning.tutoring.retrieval import search
from tests.learning.tutoring.factories.engine import course_with_lessons


def test_dictionary_forms_and_related_words():
    assert expansion.lemma("biggest") == "big"
    assert expansion.lemma("dividing") == "divide"
    assert expansion.lemma("Salaries") == "salary"
    assert {"wage", "pay"} <= set(expansion.related("salary"))
    assert expansion.related("zzqx") == ()
    assert len(expansion.related("run")) <= expansion.RELATED_PER_WORD


def test_each_content_word_is_one_group_with_its_related_words_weighted_less():
    terms = expansion.expand(["My", "salary", "salary", "the"], stop_words=frozenset({"my", "the"}))
    assert {t.group for t in terms} == {0}
    assert [(t.word, t.weight) for t in terms][:1] == [("salary", 1.0)]
    assert {t.word for t in terms if t.weight == expansion.RELATED_WEIGHT} >= {"wage", "pay"}


def test_a_question_in_other_words_finds_the_passage(app):
    course, _module, _lessons = course_with_lessons({
        "Planning": "# Take-home pay\n\nSplit your take-home pay between needs, wants and savings.",
        "Garden": "# Watering\n\nWater tomatoes deeply twice a week.",
    })
    # No word of the question is in the lesson: "salary" finds it through "pay", at the related
    # words' weight.
    hits = search([course.id], "what about my salary?", min_score=0, min_coverage=0)
    assert [hit.lesson_title for hit in hits] == ["Planning"]
    assert hits[0].coverage == pytest.approx(expansion.RELATED_WEIGHT)


def test_a_course_in_another_language_is_not_expanded(app):
    course, _module, _lessons = course_with_lessons(
        {"Budget": "# Le salaire\n\nLe pay est une ville."}, language="french")
    # "wage" would bring "pay" in English; a French course is searched with the question's words only.
    assert search([course.id], "wage") == []
