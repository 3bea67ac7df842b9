"""Does a question look like one of the course's quiz questions?

When a student pastes or rewords a question of a published quiz of the course, the tutor gives a
hint and points to the lesson instead of the answer (``answers.compose_reply``). This module
only decides whether it is such a question and which one.

The measure, on normalised text (markdown stripped, case folded, punctuation gone, ASCII):

- ``token_set_ratio`` (rapidfuzz) between the question and the prompt, 0-100: high when one's
  words are (nearly) a subset of the other's, whatever the order;
- and coverage: the share of the prompt's content words (stop words dropped) that the question
  contains, compared by their first letters so that "compounded" meets "compound". Token-set
  alone is 100 for a short question whose few words all occur in a long prompt ("what is
  python?" against "what does 7 // 2 evaluate to in python?"), which is not the same question.

A question matches when both are at least their thresholds, or when it is the prompt itself
(normalised), however short; the best-scoring prompt wins.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from anyascii import anyascii
from rapidfuzz import fuzz
from sqlalchemy import select

from portal.db import db
from portal.learning.assessment.models import QuestionKind, QuestionOption, Quiz, QuizQuestion
from portal.learning.markdown import markdown_to_text

__all__ = ["MIN_COVERAGE", "MIN_RATIO", "ExamItem", "QuizMatch", "content_words", "exam_item", "match_quiz_question",
           "normalise", "search_words"]

#: token_set_ratio (0-100) at least this ...
MIN_RATIO = 78
#: ... and at least this share of the prompt's content words in the question.
MIN_COVERAGE = 0.6
#: Questions with fewer content words than this are too short to be a quiz question.
MIN_CONTENT_WORDS = 3
#: Words compared by this many first letters (a crude stemmer that works across languages).
_STEM = 6

_NON_WORD = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")

#: Function words that say nothing about which question it is (English, French, German, Spanish,
#: Portuguese, Italian, Dutch: the courses' languages).
_STOP_WORDS_TEXT = """
a an the and or but if of to in on at by for with from as is are was were be been being it its this
that these those there here what which who whom whose when where why how do does did doing done
can could would should will shall may might must i you he she we they me my your our their them
not no yes so than then too very just also about into over under up down out off only own same
any all each few more most other some such both one two
le la les un une des du de et ou est sont en dans sur pour par avec que qui quoi ce cette ces il
elle nous vous ils elles der die das ein eine und oder ist sind im mit von zu auf fur was wie
el los las unos unas y o es son con por para que como lo um uma os e ou com het een en of is zijn
il lo gli uno che di da con per come
"""
FUNCTION_WORDS = frozenset(_STOP_WORDS_TEXT.split())
#: Words quiz prompts are made of ("Select all that apply", "True or false").
QUIZ_WORDS = frozenset({"select", "apply", "following", "true", "false", "statement", "statements"})
STOP_WORDS = FUNCTION_WORDS | QUIZ_WORDS


def normalise(text: str) -> str:
    """Markdown to plain text, ASCII, lower case, punctuation removed, spaces collapsed."""
    plain = markdown_to_text(text or "", limit=None)
    return _SPACE.sub(" ", _NON_WORD.sub(" ", anyascii(plain).lower())).strip()


def content_words(normalised: str, *, stop_words: frozenset[str] = STOP_WORDS) -> list[str]:
    return [word for word in normalised.split() if word not in stop_words]


def search_words(text: str) -> str:
    """The content words of ``text`` as written (accents kept, for stemming in the course's
    language), markdown and punctuation gone: what to search the lessons with."""
    words = re.findall(r"\w+", markdown_to_text(text or "", limit=None).lower())
    return " ".join(word for word in words if anyascii(word) not in STOP_WORDS)


def _stems(words: list[str]) -> set[str]:
    return {word[:_STEM] for word in words}


@dataclass(frozen=True)
class QuizMatch:
    question_id: uuid.UUID
    quiz_id: uuid.UUID
    quiz_title: str
    module_id: uuid.UUID | None
    #: The prompt as plain text.
    prompt: str
    ratio: float
    coverage: float
    #: What must never appear in a hint: the correct options' text, the accepted answers, the
    #: numeric answer.
    secrets: tuple[str, ...] = field(default=())
    #: The question's feedback as plain text: the instructor's word on the idea it tests, which
    #: says where in the lessons to look (used to search, never shown: it may hold the answer).
    explanation: str = ""


def _secrets(question: QuizQuestion, options: list[QuestionOption]) -> tuple[str, ...]:
    found: list[str] = []
    if question.kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE, QuestionKind.TRUE_FALSE):
        found += [markdown_to_text(option.text, limit=None) for option in options if option.is_correct]
    found += [str(answer) for answer in (question.accepted_answers or []) if str(answer).strip()]
    if question.numeric_answer is not None:
        value = Decimal(question.numeric_answer).normalize()
        found.append(format(value, "f"))
    return tuple(dict.fromkeys(secret.strip() for secret in found if secret.strip()))


def score(question: str, prompt: str) -> tuple[float, float]:
    """(token_set_ratio, coverage of the prompt's content words) of a question against a prompt."""
    q_norm, p_norm = normalise(question), normalise(prompt)
    q_words, p_words = content_words(q_norm), content_words(p_norm)
    if not q_words or not p_words:
        return 0.0, 0.0
    ratio = fuzz.token_set_ratio(" ".join(q_words), " ".join(p_words))
    p_stems = _stems(p_words)
    coverage = len(p_stems & _stems(q_words)) / len(p_stems)
    return float(ratio), coverage


def match_quiz_question(course_id: uuid.UUID, question: str) -> QuizMatch | None:
    """The published quiz question of the course that ``question`` looks like, or None.
    Two SQL statements at most (the questions, then the matched one's options)."""
    asked = normalise(question)
    if not asked:
        return None
    short = len(content_words(asked)) < MIN_CONTENT_WORDS
    rows = db.session.execute(
        select(QuizQuestion, Quiz.title, Quiz.module_id)
        .join(Quiz, Quiz.id == QuizQuestion.quiz_id)
        .where(Quiz.course_id == course_id, Quiz.published.is_(True))
        .order_by(Quiz.created_at, QuizQuestion.position)
    ).all()
    best: tuple[float, float, QuizQuestion, str, uuid.UUID | None] | None = None
    for quiz_question, quiz_title, module_id in rows:
        if normalise(quiz_question.prompt) == asked:
            ratio, coverage = 100.0, 1.0
        elif short:
            continue
        else:
            ratio, coverage = score(question, quiz_question.prompt)
            if ratio < MIN_RATIO or coverage < MIN_COVERAGE:
                continue
        if best is None or (ratio + 100 * coverage) > (best[0] + 100 * best[1]):
            best = (ratio, coverage, quiz_question, quiz_title, module_id)
    if best is None:
        return None
    ratio, coverage, quiz_question, quiz_title, module_id = best
    options = db.session.scalars(select(QuestionOption).where(QuestionOption.question_id == quiz_question.id)).all()
    return QuizMatch(question_id=quiz_question.id, quiz_id=quiz_question.quiz_id, quiz_title=quiz_title,
                     module_id=module_id, prompt=markdown_to_text(quiz_question.prompt, limit=None),
                     ratio=ratio, coverage=coverage, secrets=_secrets(quiz_question, list(options)),
                     explanation=markdown_to_text(quiz_question.feedback or "", limit=None))


# ------------------------------------------------------------------ exam items in general

#: Options listed the way a test lists them: "a) 3", "(b) 5", "C. an error", at the start of
#: the text or after a space or a line end.
_OPTION = re.compile(r"(?:^|(?<=\s))\(?([a-eA-E])[).:]\s+")
#: How exam items are phrased, whatever the course: a choice among options, a statement to
#: judge, the value a piece of code gives, a sum to work out, or a plea for the answer alone.
_EXAM_PHRASES = re.compile(
    r"\b(?:which\s+of\s+(?:the\s+following|these|the\s+options|the\s+answers)"
    r"|true\s+or\s+false|true\s*/\s*false"
    r"|what\s+(?:does|will|would|is)\b[^?]{0,80}\b(?:output|print|prints|return|returns|evaluate\s+to|display)"
    r"|what\s+is\s+the\s+(?:output|result|value)\s+of"
    r"|(?:^|[.?!]\s+)(?:calculate|compute|evaluate|work\s+out|determine)\b"
    r"|how\s+much\s+(?:is|will)\s+there\s+be\s+after"
    r"|just\s+(?:tell|give)\s+me\s+the\s+(?:answer|letter|number|option)"
    r"|(?:correct|right)\s+(?:answer|option)\s+is)",
    re.IGNORECASE)


@dataclass(frozen=True)
class ExamItem:
    """A question phrased as a test item, not one of the course's own quiz questions."""

    #: The question without its listed options: what to search the lessons with.
    stem: str
    #: The options as written: any may be the answer, so a hint never repeats one.
    options: tuple[str, ...]


def exam_item(question: str) -> ExamItem | None:
    """The question as an exam item (its stem and options) when it is phrased like one: options
    listed ("a) ... b) ..."), "which of the following", "true or false", the output of a piece of
    code, an imperative "calculate"; None for a question in a student's own words."""
    text = " ".join((question or "").split())
    marks = list(_OPTION.finditer(text))
    letters = [m.group(1).lower() for m in marks]
    listed = len(marks) >= 2 and letters[:2] == ["a", "b"]
    if not listed and not _EXAM_PHRASES.search(text):
        return None
    if not listed:
        return ExamItem(stem=text, options=())
    stem = text[: marks[0].start()].strip()
    bounds = [m.end() for m in marks] + [len(text)]
    starts = [m.start() for m in marks[1:]] + [len(text)]
    options = tuple(text[bounds[i]:starts[i]].strip(" ,;") for i in range(len(marks)))
    return ExamItem(stem=stem or text, options=tuple(option for option in options if option))
