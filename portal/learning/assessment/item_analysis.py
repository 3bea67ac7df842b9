"""Quiz item analysis, as Moodle's quiz statistics report computes it, so a teacher can spot the
questions that do not measure what the quiz measures.

Over each student's first graded attempt (Moodle's default: later attempts are practised):

- **Facility index** (F): the mean score on the question as a percent of its points. High is
  easy, low is hard; near 0 or 100 says little about anyone.
- **Discrimination index** (D): 100 x the Pearson correlation between the score on the question
  and the score on the rest of the quiz (the total without this question, so the question is
  not correlated with itself). A good question is answered well by those who do well on the
  rest: Moodle reads 50+ as very good, 30-50 adequate, 20-30 weak, under 20 very weak, and a
  negative index as a question that likely has a wrong key or is misleading. None when either
  score does not vary (everyone got it right, or everyone got the same total).
- **Choice share** per option: the share of attempts that selected it (for choice questions),
  to see which wrong option draws students.

``statistics`` is plain arithmetic over a response matrix, tested against a worked example;
``quiz_items`` reads the matrix (two statements).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select

from portal.db import db
from portal.learning.assessment.models import Answer, AttemptStatus, QuestionOption, QuizAttempt, QuizQuestion

#: Below this discrimination index a question is flagged for a look.
WEAK_DISCRIMINATION = Decimal(30)


@dataclass(frozen=True)
class ItemFigures:
    facility: Decimal | None  #: percent
    discrimination: Decimal | None  #: 100 x correlation with the rest of the quiz


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def statistics(scores: list[list[Decimal]], max_points: list[Decimal]) -> list[ItemFigures]:
    """Figures per question from ``scores[attempt][question]`` (points awarded) and each
    question's points."""
    figures = []
    for q, points in enumerate(max_points):
        item = [float(row[q]) for row in scores]
        rest = [float(sum(row, Decimal(0)) - row[q]) for row in scores]
        facility = None
        if scores and points > 0:
            facility = Decimal(str(round(100 * sum(item) / (len(item) * float(points)), 2)))
        r = _pearson(item, rest)
        figures.append(ItemFigures(facility, None if r is None else Decimal(str(round(100 * r, 2)))))
    return figures


@dataclass(frozen=True)
class OptionShare:
    text: str
    is_correct: bool
    share: Decimal  #: percent of attempts that chose it


@dataclass(frozen=True)
class Item:
    position: int
    prompt: str
    kind: str
    points: Decimal
    figures: ItemFigures
    options: list[OptionShare]

    @property
    def weak(self) -> bool:
        d = self.figures.discrimination
        return d is not None and d < WEAK_DISCRIMINATION


@dataclass(frozen=True)
class QuizItems:
    attempts: int
    items: list[Item]

    @property
    def weakest(self) -> Item | None:
        rated = [i for i in self.items if i.figures.discrimination is not None]
        return min(rated, key=lambda i: i.figures.discrimination) if rated else None


def quiz_items(quiz_id: uuid.UUID) -> QuizItems:
    """The item analysis of a quiz over each student's first graded attempt."""
    questions = list(db.session.execute(
        select(QuizQuestion.id, QuizQuestion.position, QuizQuestion.prompt, QuizQuestion.kind, QuizQuestion.points,
               QuestionOption.id, QuestionOption.text, QuestionOption.is_correct)
        .outerjoin(QuestionOption, QuestionOption.question_id == QuizQuestion.id)
        .where(QuizQuestion.quiz_id == quiz_id)
        .order_by(QuizQuestion.position, QuestionOption.position)))
    ranked = (
        select(QuizAttempt.id.label("attempt"),
               func.row_number().over(partition_by=QuizAttempt.user_id, order_by=QuizAttempt.number).label("n"))
        .where(QuizAttempt.quiz_id == quiz_id, QuizAttempt.status == AttemptStatus.GRADED)
    ).subquery()
    answers = db.session.execute(
        select(Answer.attempt_id, Answer.question_id, Answer.points_awarded, Answer.selected_option_ids)
        .where(Answer.attempt_id.in_(select(ranked.c.attempt).where(ranked.c.n == 1))))
    order: list[uuid.UUID] = []
    info: dict[uuid.UUID, tuple] = {}
    options: dict[uuid.UUID, list[tuple[uuid.UUID, str, bool]]] = {}
    for qid, position, prompt, kind, points, oid, text, correct in questions:
        if qid not in info:
            order.append(qid)
            info[qid] = (position, prompt, kind, points)
            options[qid] = []
        if oid is not None:
            options[qid].append((oid, text, correct))
    by_attempt: dict[uuid.UUID, dict[uuid.UUID, tuple[Decimal, list]]] = {}
    for attempt_id, qid, awarded, selected in answers:
        by_attempt.setdefault(attempt_id, {})[qid] = (awarded or Decimal(0), selected or [])
    rows = [[by_attempt[a].get(q, (Decimal(0), []))[0] for q in order] for a in by_attempt]
    figures = statistics(rows, [info[q][3] for q in order])
    n = len(by_attempt)
    items = []
    for index, qid in enumerate(order):
        chosen: dict[str, int] = {}
        for answered in by_attempt.values():
            for oid in answered.get(qid, (0, []))[1]:
                chosen[str(oid)] = chosen.get(str(oid), 0) + 1
        shares = [OptionShare(text, correct, Decimal(100 * chosen.get(str(oid), 0) / n).quantize(Decimal("0.1"))
                              if n else Decimal(0)) for oid, text, correct in options[qid]]
        position, prompt, kind, points = info[qid]
        items.append(Item(position, prompt, str(kind), points, figures[index], shares))
    return QuizItems(n, items)
