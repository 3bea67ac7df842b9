"""Lesson passages: how lessons are cut, indexing, and keeping passages in step with lesson
saves, deletions, moves and the course's language; ``flask tutor reindex``; demo seeding."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from portal.db import db
from portal.learning.education import authoring
from portal.learning.education.models import Lesson
from portal.learning.markdown import render_markdown
from portal.learning.tutoring import passages
from portal.learning.tutoring.models import LessonPassage
from portal.learning.tutoring.passages import CODE_INDENT, MAX_PASSAGE_CHARS, split_lesson
from tests.factories import create_user
from tests.learning.factories.manage import course_fields
from tests.learning.tutoring.factories.engine import course_with_lessons, passages_of

LESSON = """Loops repeat work.

# The for loop

A for loop runs once per item.

```python
for n in range(3):
    print(n)
```

# Empty heading below

# The for loop

Again, a second section with the same heading.
"""


# ---------------------------------------------------------------- splitting


def test_a_lesson_is_cut_at_its_headings_with_the_page_anchors():
    cut = split_lesson(LESSON)
    assert [(p.heading, p.anchor) for p in cut] == [
        ("", ""), ("The for loop", "s-the-for-loop"), ("The for loop", "s-the-for-loop-2")]
    assert cut[0].body == "Loops repeat work."
    assert "A for loop runs once per item." in cut[1].body
    # The anchors are the ids the lesson page gives those headings.
    html = str(render_markdown(LESSON))
    assert 'id="s-the-for-loop"' in html and 'id="s-the-for-loop-2"' in html


def test_code_is_kept_indented_and_markup_is_stripped():
    cut = split_lesson("# Code\n\nSee **this** [link](http://example.com):\n\n```\nx = 1\n  y = 2\n```")
    assert cut[0].body.split("\n") == ["See this link:", CODE_INDENT + "x = 1", CODE_INDENT + "  y = 2"]


def test_a_lesson_without_headings_is_one_passage_and_an_empty_one_none():
    assert [(p.heading, p.body) for p in split_lesson("Just text.\n\nMore text.")] == [
        ("", "Just text.\nMore text.")]
    assert split_lesson("") == [] and split_lesson(None) == []
    assert split_lesson("# Only a heading") == []


def test_a_very_long_section_is_split_by_paragraph_groups_keeping_its_heading():
    paragraphs = [f"Paragraph {n} " + "word " * 60 for n in range(12)]
    cut = split_lesson("# Long part\n\n" + "\n\n".join(paragraphs))
    assert len(cut) > 2
    assert {(p.heading, p.anchor) for p in cut} == {("Long part", "s-long-part")}
    assert all(len(p.body) <= MAX_PASSAGE_CHARS for p in cut)
    # Nothing lost, nothing cut inside a paragraph.
    assert "\n".join(p.body for p in cut).split("\n") == [p.strip() for p in paragraphs]


def test_a_single_huge_paragraph_is_split_at_sentences():
    sentences = [f"Sentence number {n} says something about loops." for n in range(80)]
    cut = split_lesson(" ".join(sentences))
    assert len(cut) > 1 and all(len(p.body) <= MAX_PASSAGE_CHARS for p in cut)
    assert " ".join(p.body.replace("\n", " ") for p in cut) == " ".join(sentences)


# ---------------------------------------------------------------- indexing


def test_index_lesson_replaces_the_lessons_passages(app):
    course, _module, lessons = course_with_lessons({"Loops": LESSON})
    lesson = lessons["Loops"]
    first = passages_of(lesson.id)
    assert [p.position for p in first] == [1, 2, 3]
    assert {p.course_id for p in first} == {course.id} and {p.module_id for p in first} == {lesson.module_id}
    lesson.body = "# Only one\n\nShort now."
    assert passages.index_lesson(lesson) == 1
    again = passages_of(lesson.id)
    assert [(p.position, p.heading, p.body) for p in again] == [(1, "Only one", "Short now.")]
    assert {p.id for p in first}.isdisjoint({p.id for p in again})


def test_passages_are_indexed_in_the_courses_language(app):
    course, _module, lessons = course_with_lessons({"Épargne": "# L'épargne\n\nIl faut épargner chaque mois."},
                                                   language="french")
    passage = passages_of(lessons["Épargne"].id)[0]
    assert passage.language == "french"
    lexemes = db.session.scalar(text("SELECT tsvector_to_array(search) FROM lesson_passages WHERE id = :id"),
                                {"id": passage.id})
    # The French stemmer and stop words: épargner -> épargn (English keeps "épargner"), "il" dropped.
    assert "épargn" in lexemes and "épargner" not in lexemes and "il" not in lexemes


def test_reindex_all_counts_every_passage(app):
    course_with_lessons({"One": "# A\n\nx\n\n# B\n\ny"})
    course_with_lessons({"Two": "z"})
    total = passages.reindex_all()
    assert total == db.session.scalar(select(func.count()).select_from(LessonPassage))
    assert total >= 3


# ---------------------------------------------------------------- in step with authoring


@pytest.fixture
def authored(app):
    teacher = create_user("faculty")
    course, module, lessons = course_with_lessons({"First": "# Start\n\nFirst text."}, instructor=teacher)
    return teacher, course, module, lessons["First"]


def test_adding_and_saving_a_lesson_reindexes_it_in_the_same_transaction(authored):
    teacher, _course, module, _first = authored
    lesson = authoring.add_lesson(teacher, module.id, title="Second", body="# Alpha\n\nOne.\n\n# Beta\n\nTwo.",
                                  estimated_minutes=None)
    assert [p.heading for p in passages_of(lesson.id)] == ["Alpha", "Beta"]
    authoring.update_lesson(teacher, lesson.id, title="Second", body="# Gamma\n\nThree.", estimated_minutes=None)
    assert [(p.heading, p.body) for p in passages_of(lesson.id)] == [("Gamma", "Three.")]


def test_a_failed_save_leaves_the_passages_as_they_were(authored):
    teacher, _course, _module, first = authored
    before = [(p.heading, p.body) for p in passages_of(first.id)]
    with pytest.raises(authoring.InvalidInput):
        authoring.update_lesson(teacher, first.id, title="", body="# New\n\nText.", estimated_minutes=None)
    assert [(p.heading, p.body) for p in passages_of(first.id)] == before


def test_deleting_a_lesson_or_its_module_removes_its_passages(authored):
    teacher, course, module, first = authored
    second = authoring.add_lesson(teacher, module.id, title="Second", body="Body.", estimated_minutes=None)
    authoring.delete_lesson(teacher, first.id)
    db.session.flush()
    assert passages_of(first.id) == []
    assert len(passages_of(second.id)) == 1
    authoring.delete_module(teacher, module.id)
    db.session.flush()
    assert db.session.scalar(select(func.count()).select_from(LessonPassage)
                             .where(LessonPassage.course_id == course.id)) == 0


def test_moving_a_lesson_keeps_its_passages(authored):
    teacher, _course, module, first = authored
    second = authoring.add_lesson(teacher, module.id, title="Second", body="# Two\n\nBody.", estimated_minutes=None)
    authoring.move_lesson(teacher, second.id, "up")
    assert [p.heading for p in passages_of(second.id)] == ["Two"]
    assert [p.heading for p in passages_of(first.id)] == ["Start"]


def test_changing_the_course_language_reindexes_its_passages(authored):
    teacher, course, _module, first = authored
    fields = course_fields(title=course.title, slug=course.slug)
    authoring.update_course(teacher, course.id, **fields, language="french")
    assert course.language == "french"
    assert {p.language for p in passages_of(first.id)} == {"french"}
    # A post without a language keeps the course's.
    authoring.update_course(teacher, course.id, **fields)
    assert course.language == "french"


def test_an_unknown_course_language_is_refused_with_a_message(authored):
    teacher, course, _module, _first = authored
    with pytest.raises(authoring.InvalidInput) as refused:
        authoring.update_course(teacher, course.id, **course_fields(title=course.title, slug=course.slug),
                                language="klingon")
    assert refused.value.field == "language"


# ---------------------------------------------------------------- command line and demo


def test_flask_tutor_reindex_rebuilds_every_course_or_one(app):
    course, _module, lessons = course_with_lessons({"One": "# A\n\nx\n\n# B\n\ny"})
    course_with_lessons({"Two": "z"})
    db.session.execute(LessonPassage.__table__.delete().where(LessonPassage.course_id == course.id))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tutor", "reindex", "--course", course.slug])
    assert result.exit_code == 0, result.output
    assert "Indexed 2 passages of 1 course." in result.output
    assert len(passages_of(lessons["One"].id)) == 2
    result = runner.invoke(args=["tutor", "reindex"])
    assert result.exit_code == 0, result.output
    assert "Indexed" in result.output and "courses." in result.output
    result = runner.invoke(args=["tutor", "reindex", "--course", "no-such-course"])
    assert result.exit_code != 0 and "no-such-course" in result.output


def test_seeding_the_demo_indexes_its_courses_and_stays_idempotent(app):
    from tests.learning.tutoring.factories.engine import seed_demo_courses

    courses = seed_demo_courses()
    ids = [course.id for course in courses.values()]

    def count():
        return db.session.scalar(select(func.count()).select_from(LessonPassage)
                                 .where(LessonPassage.course_id.in_(ids)))

    first = count()
    lessons = db.session.scalar(select(func.count()).select_from(Lesson).where(Lesson.course_id.in_(ids)))
    assert first >= 3 * lessons  # every demo lesson has several sections
    seed_demo_courses()
    assert count() == first
