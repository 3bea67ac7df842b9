"""``compose_reply``: the contract the chat service stands on (kinds, body, citations, topic,
source), answers made of the lessons' own sentences, honest "not found" replies with places to
look, no writes and a fixed number of statements."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from portal.learning.tutoring.answers import Reply, compose_reply
from portal.learning.tutoring.models import ReplyKind, ReplySource
from tests.learning.factories import catalog as factories_catalog
from tests.learning.tutoring.factories.engine import course_with_lessons

GARDEN = {
    "Watering": "# Watering plants\n\nWater tomatoes **deeply** twice a week. Morning watering keeps leaves dry. "
                "Pots dry out faster than beds.\n\n```\nwater(tomatoes, litres=5)\n```\n\n"
                "# Mulch\n\nA layer of straw keeps the soil moist and cool.",
    "Pests": "# Slugs\n\nSlugs eat young seedlings at night. Beer traps and copper tape keep them off.",
    "Compost": "# Starting a heap\n\nMix green and brown material. Turn the heap monthly.",
}
CITATION_KEYS = {"passage_id", "lesson_id", "lesson_title", "module_title", "heading", "anchor", "rank"}


@pytest.fixture
def garden(app):
    course, module, lessons = course_with_lessons(GARDEN, title="Gardening basics", module_title="Growing food")
    return course, module, lessons


def test_an_answer_quotes_the_best_sentences_with_their_lesson_and_section(garden):
    course, module, lessons = garden
    reply = compose_reply(course, "how often should I be watering my tomatoes?")
    assert isinstance(reply, Reply)
    assert reply.kind == ReplyKind.ANSWER and reply.source == ReplySource.RETRIEVAL and reply.fallback_reason is None
    first = reply.body.split("\n\n")[0]
    assert first.startswith("From “Watering” — Watering plants:\n")
    assert "Water tomatoes deeply twice a week." in first
    assert "**" not in reply.body and "litres=5" not in reply.body  # plain text, no code lines
    assert reply.topic_module_id == module.id
    top = reply.citations[0]
    assert top["lesson_id"] == str(lessons["Watering"].id) and top["anchor"] == "s-watering-plants"
    assert top["module_title"] == "Growing food" and top["heading"] == "Watering plants"


def test_citations_are_json_ready_in_rank_order_with_the_agreed_keys(garden):
    course, _module, _lessons = garden
    reply = compose_reply(course, "how do I keep slugs off my seedlings and the soil moist?")
    assert reply.citations and json.loads(json.dumps(reply.citations)) == reply.citations
    for citation in reply.citations:
        assert set(citation) == CITATION_KEYS
        uuid.UUID(citation["passage_id"]), uuid.UUID(citation["lesson_id"])
        assert isinstance(citation["rank"], float)
    ranks = [citation["rank"] for citation in reply.citations]
    assert ranks == sorted(ranks, reverse=True) and len(ranks) <= 3
    # Each cited passage is quoted in the body.
    for citation in reply.citations:
        assert f"From “{citation['lesson_title']}” — {citation['heading']}:" in reply.body


def test_the_reply_is_immutable(garden):
    reply = compose_reply(garden[0], "how often should I water tomatoes?")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.body = "changed"


def test_nothing_found_says_so_and_suggests_the_lesson_whose_words_come_closest(garden):
    course, _module, _lessons = garden
    reply = compose_reply(course, "are tomatoes botanically a fruit or a vegetable, and which vitamins do they have?")
    assert reply.kind == ReplyKind.NOT_FOUND and reply.citations == [] and reply.topic_module_id is None
    assert reply.source == ReplySource.RETRIEVAL and reply.fallback_reason is None
    assert "couldn't find" in reply.body and "won't guess" in reply.body
    assert "the lesson “Watering” in “Growing food”" in reply.body
    assert "Water tomatoes" not in reply.body  # a pointer, not a quote


def test_nothing_found_suggests_a_lesson_whose_title_is_close(garden):
    course, _module, _lessons = garden
    reply = compose_reply(course, "tell me about pest")
    assert reply.kind == ReplyKind.NOT_FOUND
    assert "the lesson “Pests” in “Growing food”" in reply.body


def test_nothing_found_and_nothing_close_shows_the_course_outline(garden):
    course, _module, _lessons = garden
    factories_catalog.make_module(course, title="Harvest and storage")
    reply = compose_reply(course, "what is the capital of France?")
    assert reply.kind == ReplyKind.NOT_FOUND
    assert "“Growing food”; “Harvest and storage”" in reply.body and "outline" in reply.body


def test_only_the_searchable_courses_are_quoted(garden):
    course, _module, _lessons = garden
    other, _m, _l = course_with_lessons({"Orchard": "# Pruning apple trees\n\nPrune apple trees in late winter."})
    question = "when should I prune my apple trees?"
    assert compose_reply(course, question).kind == ReplyKind.NOT_FOUND  # default: the course itself
    reply = compose_reply(course, question, searchable_course_ids=[course.id, other.id])
    assert reply.kind == ReplyKind.ANSWER and reply.citations[0]["lesson_title"] == "Orchard"


def test_composing_writes_nothing_and_costs_a_few_statements_whatever_the_course_size(garden, statements):
    course, module, _lessons = garden
    for n in range(30):
        factories_catalog.make_lesson(module, title=f"Extra {n}", body=f"# Topic {n}\n\nWatering note {n}.")
    from portal.learning.tutoring import passages

    passages.reindex_course(course)
    for question in ("how often should I water tomatoes?", "what is the capital of France?"):
        with statements() as counter:
            compose_reply(course, question)
        verbs = [s.lstrip().split(None, 1)[0].upper() for s in counter.statements]
        assert not {"INSERT", "UPDATE", "DELETE", "COMMIT"} & set(verbs), counter.statements
        assert counter.count <= 3, counter.statements


def test_citations_reach_other_lessons_before_more_sections_of_the_best_one():
    from portal.learning.tutoring.answers import _cited
    from portal.learning.tutoring.retrieval import Hit

    def hit(lesson: int, rank: float) -> Hit:
        return Hit(passage_id=uuid.uuid4(), lesson_id=uuid.UUID(int=lesson), lesson_title=f"L{lesson}",
                   module_id=uuid.UUID(int=9), module_title="M", heading="h", anchor="a", snippet="", rank=rank)

    hits = [hit(1, 1.0), hit(1, 0.9), hit(1, 0.8), hit(2, 0.4), hit(3, 0.35), hit(4, 0.2)]
    cited = _cited(hits)
    # The best passage of lessons 2 and 3 (within 0.3 of the best) come before lesson 1's others;
    # lesson 4 is too far below.
    assert [(h.lesson_title, h.rank) for h in cited] == [("L1", 1.0), ("L2", 0.4), ("L3", 0.35)]
    # With one lesson close, the best lesson's other sections fill the citations.
    assert [(h.lesson_title, h.rank) for h in _cited([hit(1, 1.0), hit(1, 0.9), hit(2, 0.1)])] == \
        [("L1", 1.0), ("L1", 0.9)]
