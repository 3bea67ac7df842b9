"""Lesson passages: the lessons cut at their headings, the unit the tutor retrieves and cites.

A lesson's markdown becomes one passage per section: the text before the first heading is
passage 1 (heading ""), then one passage per heading with the text up to the next heading. The
anchor is the heading's ``id`` on the lesson page, from the same renderer
(``portal.learning.markdown.markdown_blocks``), so a citation links to its section.

A very long section is split into several passages by groups of paragraphs, each keeping the
section's heading and anchor: a passage the size of a chapter would match every question a
little and answer none well. A heading with no text under it yields no passage of its own.

Passages are rebuilt whole (delete, then insert) in the caller's transaction whenever a lesson
is saved or deleted (the ``lesson_changed`` event) and for every lesson of a course whose
language changes (``reindex_course``). ``flask tutor reindex`` rebuilds everything.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select

from portal import events
from portal.db import db
from portal.learning.education.models import Course, Lesson
from portal.learning.markdown import markdown_blocks
from portal.learning.tutoring.models import LessonPassage

__all__ = ["CODE_INDENT", "MAX_PASSAGE_CHARS", "PassageText", "index_lesson", "reindex_all", "reindex_course", "split_lesson"]

#: A section longer than this (in characters of plain text) is split by groups of paragraphs.
MAX_PASSAGE_CHARS = 1200
#: ... into groups of about this size.
TARGET_PASSAGE_CHARS = 800

#: Lines of code in a passage's body start with this.
CODE_INDENT = "    "

_HEADING_MAX = 300  # lesson_passages.heading
_ANCHOR_MAX = 120  # lesson_passages.anchor
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class PassageText:
    heading: str
    anchor: str
    body: str


def _pieces(text: str) -> list[str]:
    """A block longer than a passage may be, cut at line ends, then at sentence ends."""
    if len(text) <= MAX_PASSAGE_CHARS:
        return [text]
    pieces: list[str] = []
    for line in text.split("\n"):
        if len(line) <= MAX_PASSAGE_CHARS:
            pieces.append(line)
        else:
            pieces.extend(_SENTENCE_END.split(line))
    return pieces


def _groups(blocks: list[str]) -> list[str]:
    """The section's blocks as one body, or as several of about TARGET_PASSAGE_CHARS when the
    whole is longer than MAX_PASSAGE_CHARS. Blocks are never cut unless one alone is too long."""
    whole = "\n".join(blocks)
    if len(whole) <= MAX_PASSAGE_CHARS:
        return [whole] if whole.strip() else []
    pieces = [piece for block in blocks for piece in _pieces(block) if piece.strip()]
    groups: list[list[str]] = [[]]
    size = 0
    for piece in pieces:
        if groups[-1] and size + len(piece) > TARGET_PASSAGE_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(piece)
        size += len(piece) + 1
    # A short tail reads better joined to the group before it.
    if len(groups) > 1 and sum(len(p) for p in groups[-1]) < TARGET_PASSAGE_CHARS // 4:
        tail = groups.pop()
        groups[-1].extend(tail)
    return ["\n".join(group) for group in groups]


def split_lesson(body: str | None) -> list[PassageText]:
    """The passages of a lesson's markdown, in order."""
    sections: list[tuple[str, str, list[str]]] = [("", "", [])]
    for block in markdown_blocks(body or ""):
        if block.heading:
            sections.append((block.text, block.anchor, []))
        elif block.code:
            # Code is kept (students ask about what it shows), indented so that a reader of the
            # plain text, the answer composer included, can tell it from prose.
            sections[-1][2].append("\n".join(CODE_INDENT + line for line in block.text.split("\n")))
        else:
            sections[-1][2].append(block.text)
    passages = []
    for heading, anchor, blocks in sections:
        for text in _groups(blocks):
            passages.append(PassageText(heading[:_HEADING_MAX], anchor[:_ANCHOR_MAX], text))
    return passages


def _language(course_id: uuid.UUID) -> str:
    course = db.session.get(Course, course_id)
    return course.language if course is not None else "english"


def _rows(lesson: Lesson, language: str) -> list[LessonPassage]:
    return [LessonPassage(lesson_id=lesson.id, course_id=lesson.course_id, module_id=lesson.module_id,
                          position=position, heading=passage.heading, anchor=passage.anchor,
                          body=passage.body, language=language)
            for position, passage in enumerate(split_lesson(lesson.body), start=1)]


def index_lesson(lesson: Lesson, *, language: str | None = None) -> int:
    """Replace the lesson's passages with ones cut from its current text, in the caller's
    transaction (flushed, not committed). Returns how many passages it has now."""
    db.session.flush()  # the lesson's own pending changes first (a new lesson needs its row)
    db.session.execute(delete(LessonPassage).where(LessonPassage.lesson_id == lesson.id))
    rows = _rows(lesson, language or _language(lesson.course_id))
    db.session.add_all(rows)
    db.session.flush()
    return len(rows)


def remove_lesson(lesson_id: uuid.UUID) -> None:
    db.session.execute(delete(LessonPassage).where(LessonPassage.lesson_id == lesson_id))


def reindex_course(course: Course) -> int:
    """Rebuild the passages of every lesson of ``course`` in its current language. Returns the
    number of passages."""
    db.session.flush()
    db.session.execute(delete(LessonPassage).where(LessonPassage.course_id == course.id))
    lessons = db.session.scalars(select(Lesson).where(Lesson.course_id == course.id)
                                 .order_by(Lesson.module_id, Lesson.position)).all()
    count = 0
    for lesson in lessons:
        rows = _rows(lesson, course.language)
        db.session.add_all(rows)
        count += len(rows)
    db.session.flush()
    return count


def reindex_all() -> int:
    """Rebuild the passages of every course. Returns the number of passages."""
    total = 0
    for course in db.session.scalars(select(Course).order_by(Course.created_at)).all():
        total += reindex_course(course)
    return total


@events.lesson_changed.connect
def _on_lesson_changed(_sender=None, *, lesson: Lesson, change: str, **_extra) -> None:
    """Keep the lesson's passages in step with its text, in the same transaction."""
    if change == "deleted":
        remove_lesson(lesson.id)
    else:
        index_lesson(lesson)
