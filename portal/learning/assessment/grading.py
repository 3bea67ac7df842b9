"""Automatic grading of quiz answers, one pure function per question kind.

Nothing here touches the database: each function takes what the question expects and what the
student answered, and returns the points earned and whether the answer is fully right. The
services feed them rows; the tests feed them plain values.

Rules:

- single choice and true/false: all or nothing; the chosen option must be the correct one.
- multiple choice: partial credit, ``max(0, (right chosen - wrong chosen) / right total)`` of the
  points, so ticking every box earns nothing more than ticking none.
- short answer: the answer (surrounding spaces dropped) compared with each accepted answer,
  exactly, ignoring case, or as a regular expression that must match the whole answer.
- numeric: right when ``|answer - expected| <= tolerance`` (the edges count as right).
- essay: not graded here (``None``); a person grades it.

Patterns are written by faculty but run on students' input, so they are kept tame: at most
``MAX_PATTERN_LENGTH`` characters, no quantified group that itself holds a quantifier (the shape
of catastrophic backtracking, ``(a+)+``), and only run on answers of at most
``MAX_MATCHED_LENGTH`` characters (a longer answer does not match: a short answer it is not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from portal.learning.assessment.models import QuestionKind, ShortAnswerMatch

MAX_PATTERN_LENGTH = 200
MAX_MATCHED_LENGTH = 200
CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# A group with a quantifier inside, itself followed by a quantifier: ``(a+)+``, ``(\w*x)*``,
# ``(a{2,})+``. Backslash escapes inside the group are skipped as pairs.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d*,?\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d*,?\d*\})")


@dataclass(frozen=True)
class Grade:
    points: Decimal
    correct: bool


def _points(value) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def _all_or_nothing(correct: bool, points) -> Grade:
    return Grade(_points(points) if correct else ZERO, correct)


def grade_single(correct_ids: Iterable, selected_ids: Iterable, points) -> Grade:
    """Single choice and true/false: right only when exactly the correct option is chosen."""
    correct, selected = {str(i) for i in correct_ids}, {str(i) for i in selected_ids}
    return _all_or_nothing(bool(correct) and selected == correct, points)


def grade_multiple(correct_ids: Iterable, selected_ids: Iterable, points) -> Grade:
    """Multiple choice with partial credit for the right boxes, less the wrong ones."""
    correct, selected = {str(i) for i in correct_ids}, {str(i) for i in selected_ids}
    if not correct:
        return Grade(ZERO, False)
    right = len(selected & correct)
    wrong = len(selected - correct)
    share = max(Decimal(0), Decimal(right - wrong) / Decimal(len(correct)))
    return Grade(_points(share * Decimal(points)), selected == correct)


def normalise_text(answer: str | None) -> str:
    return (answer or "").strip()


def short_matches(answer: str | None, accepted: Iterable[str], match: ShortAnswerMatch | str) -> bool:
    given = normalise_text(answer)
    if not given:
        return False
    match = ShortAnswerMatch(match)
    for expected in accepted:
        if match == ShortAnswerMatch.EXACT and given == normalise_text(expected):
            return True
        if match == ShortAnswerMatch.CASE_INSENSITIVE and given.casefold() == normalise_text(expected).casefold():
            return True
        if (match == ShortAnswerMatch.PATTERN and len(given) <= MAX_MATCHED_LENGTH
                and pattern_problem(expected) is None and re.fullmatch(expected, given)):
            return True
    return False


def grade_short(answer: str | None, accepted: Iterable[str], match: ShortAnswerMatch | str, points) -> Grade:
    return _all_or_nothing(short_matches(answer, accepted, match), points)


def to_decimal(value) -> Decimal | None:
    """A finite Decimal from user input, or None (blank, not a number, infinite, NaN)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    else:
        text = str(value).strip().replace(",", ".") if isinstance(value, str) else str(value)
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
    return number if number.is_finite() else None


def grade_numeric(answer, expected, tolerance, points) -> Grade:
    given = to_decimal(answer)
    if given is None or expected is None:
        return Grade(ZERO, False)
    allowed = Decimal(tolerance) if tolerance is not None else Decimal(0)
    return _all_or_nothing(abs(given - Decimal(expected)) <= allowed, points)


def pattern_problem(pattern: str) -> str | None:
    """Why a short-answer pattern is refused, or None when it is fine."""
    if not pattern:
        return "A pattern cannot be empty."
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"A pattern can be at most {MAX_PATTERN_LENGTH} characters."
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"The pattern {pattern!r} is not a valid regular expression: {exc}."
    except (RecursionError, OverflowError):
        return f"The pattern {pattern!r} is too complex."
    if _NESTED_QUANTIFIER.search(pattern):
        return (f"The pattern {pattern!r} repeats a group that itself repeats (like (a+)+), which can take "
                "forever to match. Write it without the nested repetition.")
    return None


def grade(kind: QuestionKind | str, points, *, correct_option_ids: Iterable = (), selected_option_ids: Iterable = (),
          text: str | None = None, accepted_answers: Iterable[str] = (), match=None, number=None,
          numeric_answer=None, numeric_tolerance=None) -> Grade | None:
    """Grade one answer of any kind; ``None`` for an essay (graded by hand)."""
    kind = QuestionKind(kind)
    if kind in (QuestionKind.SINGLE, QuestionKind.TRUE_FALSE):
        return grade_single(correct_option_ids, selected_option_ids, points)
    if kind == QuestionKind.MULTIPLE:
        return grade_multiple(correct_option_ids, selected_option_ids, points)
    if kind == QuestionKind.SHORT:
        return grade_short(text, accepted_answers, match or ShortAnswerMatch.EXACT, points)
    if kind == QuestionKind.NUMERIC:
        return grade_numeric(number, numeric_answer, numeric_tolerance, points)
    return None


def percent_of(score: Decimal, max_score: Decimal) -> Decimal:
    if not max_score:
        return ZERO
    return min(Decimal(100), (Decimal(score) * 100 / Decimal(max_score))).quantize(CENT, rounding=ROUND_HALF_UP)
