"""Learning insights: what the portal has learned about how a student does in one course.

For each topic (a module of the course) a mastery from 0 to 100, from two kinds of evidence:

- Quiz answers. Per quiz of the module, the student's *latest* submitted or graded attempt
  counts: insights describe what the student knows now, so a retry that went better shows the
  topic improving and one that went worse shows it slipping. (Which attempt counts for the
  *grade* is the quiz's own rule and the gradebook's business.) Every question of that attempt
  counts, an unanswered one as nothing earned; an essay still waiting for its grader is left
  out until it is graded. Multiple-choice partial credit counts as the points awarded.
- Assignment grades, once released. A grade the staff have not released is invisible to the
  student everywhere else, so it is not used here either.

The quiz share (points earned / points possible) and the assignment share (score / points) are
combined with the course's own gradebook weights (``course.grading``), scaled to the kinds of
evidence present. A topic is called weak or strong only on enough evidence (``MIN_ANSWERS``
answers or ``MIN_GRADES`` grade); quizzes and assignments outside any module have no topic.

Pace compares the share of the course's lessons done with the share expected by now. The
schedule runs from the start of study (the enrolment, or the first lesson opened if that came
earlier) to the course's latest due date (assignments' due dates, this student's extensions
included, and quizzes' closing times) when there is one after the start; otherwise over the
course's estimated length (``estimated_hours``, else the sum of its lessons' minutes) studied
at ``STUDY_HOURS_PER_WEEK``. A course with neither gets no pace insight.

``refresh_insights`` replaces a student's insights for a course in one go: a handful of
statements (the aggregates are computed by PostgreSQL, not row by row here), serialised per
student and course by a transaction-level advisory lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import DateTime, Text, and_, bindparam, cast, delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on

from portal.db import base, db
from portal.learning.assessment.gradebook import ASSIGNMENTS, QUIZZES, Scheme
from portal.learning.assessment.models import Answer, AttemptStatus, Quiz, QuizAttempt, QuizQuestion
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus, Lesson, Module, Progress
from portal.learning.lms.models import Assignment, Grade
from portal.learning.tutoring.models import InsightKind, LearningInsight

# Thresholds. Mastery is a percentage of the points available in the evidence.
#: Below this mastery a topic is weak: the usual passing line of the portal's quizzes.
WEAK_BELOW = Decimal(60)
#: From this mastery on a topic is strong: a solid B and above on the default letter scale.
STRONG_FROM = Decimal(85)
#: The least evidence before a topic is called weak or strong: this many quiz answers ...
MIN_ANSWERS = 3
#: ... or this many released assignment grades (one graded piece of work says more than a
#: couple of single questions).
MIN_GRADES = 1
#: Pace within this many percentage points of the expected share is "on track".
PACE_TOLERANCE = Decimal(10)
#: A part-time learner's week: how a course's length in hours becomes a calendar schedule when
#: the course has no due dates.
STUDY_HOURS_PER_WEEK = 5

HUNDRED = Decimal(100)
CENT = Decimal("0.01")
#: Attempts whose answers count as evidence (in progress ones do not).
COUNTED_ATTEMPTS = (AttemptStatus.SUBMITTED, AttemptStatus.GRADED)


def _number(value: Decimal | int) -> str:
    """4, 4.5 or 4.25, without trailing zeros."""
    value = Decimal(value)
    return f"{value.quantize(CENT).normalize():f}"


def _percent(value: Decimal) -> str:
    return str(int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


# ---------------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class TopicStats:
    """The evidence about one module, and the mastery it gives."""

    module_id: uuid.UUID
    title: str
    position: int
    lessons_total: int
    lessons_done: int
    #: Questions of the latest attempts (answered or not, graded).
    answers: int
    correct: int
    quiz_earned: Decimal
    quiz_possible: Decimal
    graded_assignments: int
    assignment_earned: Decimal
    assignment_possible: Decimal
    #: 0 to 100, None when there is no evidence at all.
    mastery: Decimal | None

    @property
    def enough_evidence(self) -> bool:
        return self.answers >= MIN_ANSWERS or self.graded_assignments >= MIN_GRADES

    @property
    def weak(self) -> bool:
        return self.enough_evidence and self.mastery is not None and self.mastery < WEAK_BELOW

    @property
    def strong(self) -> bool:
        return self.enough_evidence and self.mastery is not None and self.mastery >= STRONG_FROM

    def basis(self) -> dict:
        return {"quiz_answers": self.answers, "correct": self.correct,
                "quiz_points": float(self.quiz_earned), "quiz_points_possible": float(self.quiz_possible),
                "graded_assignments": self.graded_assignments,
                "assignment_points": float(self.assignment_earned),
                "assignment_points_possible": float(self.assignment_possible),
                "lessons_done": self.lessons_done, "lessons_total": self.lessons_total,
                "attempts_counted": "latest"}


def mastery(quiz_earned: Decimal, quiz_possible: Decimal, assignment_earned: Decimal,
            assignment_possible: Decimal, weights: dict[str, Decimal]) -> Decimal | None:
    """The weighted mastery 0-100 of a topic, or None without evidence. ``weights`` are the
    course's category weights; only the categories with evidence count, scaled to them (equal
    when the present ones weigh nothing)."""
    parts: list[tuple[Decimal, Decimal]] = []
    if quiz_possible > 0:
        parts.append((Decimal(quiz_earned) / Decimal(quiz_possible), weights.get(QUIZZES, Decimal(0))))
    if assignment_possible > 0:
        parts.append((Decimal(assignment_earned) / Decimal(assignment_possible),
                      weights.get(ASSIGNMENTS, Decimal(0))))
    if not parts:
        return None
    total = sum((weight for _, weight in parts), Decimal(0))
    if total <= 0:
        parts = [(share, Decimal(1)) for share, _ in parts]
        total = Decimal(len(parts))
    value = HUNDRED * sum((share * weight for share, weight in parts), Decimal(0)) / total
    return min(HUNDRED, max(Decimal(0), value)).quantize(CENT, rounding=ROUND_HALF_UP)


def _topic_rows(user_id: uuid.UUID, course_id: uuid.UUID):
    """One statement: every module of the course with the student's lessons, latest quiz
    attempts and released grades aggregated per module."""
    latest = (
        select(QuizAttempt.id, QuizAttempt.quiz_id, QuizAttempt.layout)
        .join(Quiz, Quiz.id == QuizAttempt.quiz_id)
        .where(QuizAttempt.user_id == user_id, Quiz.course_id == course_id,
               QuizAttempt.status.in_(COUNTED_ATTEMPTS))
        .ext(distinct_on(QuizAttempt.quiz_id))
        .order_by(QuizAttempt.quiz_id, QuizAttempt.number.desc())
        .cte("latest_attempts")
    )
    asked = latest.c.layout["questions"]
    # The questions the attempt showed (its layout); an attempt without a layout showed them all.
    in_attempt = or_(func.coalesce(func.jsonb_array_length(asked), 0) == 0,
                     asked.has_key(cast(QuizQuestion.id, Text)))
    answers = (
        select(Quiz.module_id.label("module_id"),
               func.count().label("answers"),
               func.count().filter(Answer.is_correct.is_(True)).label("correct"),
               func.coalesce(func.sum(Answer.points_awarded), 0).label("earned"),
               func.sum(QuizQuestion.points).label("possible"))
        .select_from(latest)
        .join(Quiz, Quiz.id == latest.c.quiz_id)
        .join(QuizQuestion, QuizQuestion.quiz_id == latest.c.quiz_id)
        .outerjoin(Answer, and_(Answer.attempt_id == latest.c.id, Answer.question_id == QuizQuestion.id))
        .where(Quiz.module_id.is_not(None), in_attempt,
               or_(Answer.id.is_(None), Answer.points_awarded.is_not(None)))
        .group_by(Quiz.module_id)
        .subquery("answers")
    )
    grades = (
        select(Assignment.module_id.label("module_id"), func.count().label("graded"),
               func.sum(Grade.score).label("earned"), func.sum(Assignment.points).label("possible"))
        .join(Assignment, Assignment.id == Grade.assignment_id)
        .where(Grade.user_id == user_id, Assignment.course_id == course_id, Grade.released_at.is_not(None),
               Assignment.module_id.is_not(None))
        .group_by(Assignment.module_id)
        .subquery("grades")
    )
    lessons = (
        select(Lesson.module_id.label("module_id"), func.count(Lesson.id).label("total"),
               func.count(Progress.completed_at).label("done"))
        .outerjoin(Progress, and_(Progress.lesson_id == Lesson.id, Progress.user_id == user_id))
        .where(Lesson.course_id == course_id)
        .group_by(Lesson.module_id)
        .subquery("lessons")
    )
    return db.session.execute(
        select(Module.id, Module.title, Module.position,
               func.coalesce(lessons.c.total, 0).label("lessons_total"),
               func.coalesce(lessons.c.done, 0).label("lessons_done"),
               func.coalesce(answers.c.answers, 0).label("answers"),
               func.coalesce(answers.c.correct, 0).label("correct"),
               func.coalesce(answers.c.earned, 0).label("quiz_earned"),
               func.coalesce(answers.c.possible, 0).label("quiz_possible"),
               func.coalesce(grades.c.graded, 0).label("graded"),
               func.coalesce(grades.c.earned, 0).label("assignment_earned"),
               func.coalesce(grades.c.possible, 0).label("assignment_possible"))
        .outerjoin(lessons, lessons.c.module_id == Module.id)
        .outerjoin(answers, answers.c.module_id == Module.id)
        .outerjoin(grades, grades.c.module_id == Module.id)
        .where(Module.course_id == course_id)
        .order_by(Module.position)
    ).all()


def topic_stats(user_id: uuid.UUID, course_id: uuid.UUID, grading: dict | None) -> list[TopicStats]:
    """Every module of the course with the student's evidence and mastery, in course order."""
    weights = Scheme.from_course(grading).weights
    topics = []
    for row in _topic_rows(user_id, course_id):
        quiz_earned, quiz_possible = Decimal(row.quiz_earned), Decimal(row.quiz_possible)
        a_earned, a_possible = Decimal(row.assignment_earned), Decimal(row.assignment_possible)
        topics.append(TopicStats(
            module_id=row.id, title=row.title, position=row.position, lessons_total=row.lessons_total,
            lessons_done=row.lessons_done, answers=row.answers, correct=row.correct, quiz_earned=quiz_earned,
            quiz_possible=quiz_possible, graded_assignments=row.graded, assignment_earned=a_earned,
            assignment_possible=a_possible,
            mastery=mastery(quiz_earned, quiz_possible, a_earned, a_possible, weights)))
    return topics


def _evidence_phrase(topic: TopicStats) -> str:
    parts = []
    if topic.answers:
        parts.append(f"answered {topic.correct} of {topic.answers} question{'s' if topic.answers != 1 else ''} "
                     "correctly")
    if topic.graded_assignments == 1:
        parts.append(f"scored {_number(topic.assignment_earned)} of {_number(topic.assignment_possible)} "
                     "on its assignment")
    elif topic.graded_assignments:
        share = HUNDRED * topic.assignment_earned / topic.assignment_possible
        parts.append(f"scored {_percent(share)}% on its {topic.graded_assignments} graded assignments")
    return "you " + " and ".join(parts)


def _clip(title: str, limit: int = 120) -> str:
    return title if len(title) <= limit else title[: limit - 1] + "\u2026"


def topic_summary(topic: TopicStats) -> str:
    """One sentence for the student about a weak or strong topic."""
    verdict = "needs more work" if topic.weak else "is a strength"
    return (f"{_clip(topic.title)} {verdict}: {_evidence_phrase(topic)} "
            f"(mastery {_percent(topic.mastery)}%).")


# ---------------------------------------------------------------------------------- pace


@dataclass(frozen=True)
class Schedule:
    started_at: datetime
    ends_at: datetime
    #: What the end rests on: ``due_dates``, ``estimated_hours`` or ``lesson_minutes``.
    source: str


@dataclass(frozen=True)
class Pace:
    lessons_done: int
    lessons_total: int
    done_percent: Decimal
    expected_percent: Decimal
    schedule: Schedule

    @property
    def score(self) -> Decimal:
        """Percent done minus percent expected: positive ahead, negative behind."""
        return (self.done_percent - self.expected_percent).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def verdict(self) -> str:
        if self.score >= PACE_TOLERANCE:
            return "ahead"
        if self.score <= -PACE_TOLERANCE:
            return "behind"
        return "on_track"

    def summary(self) -> str:
        done = (f"{self.lessons_done} of {self.lessons_total} lesson{'s' if self.lessons_total != 1 else ''} "
                f"done ({_percent(self.done_percent)}%)")
        expected = f"{_percent(self.expected_percent)}%"
        if self.verdict == "ahead":
            return f"You are ahead of schedule: {done} where about {expected} was expected by now."
        if self.verdict == "behind":
            return f"You are behind schedule: {done} where about {expected} was expected by now."
        return f"You are on track: {done}, close to the {expected} expected by now."

    def basis(self) -> dict:
        return {"lessons_done": self.lessons_done, "lessons_total": self.lessons_total,
                "done_percent": float(self.done_percent), "expected_percent": float(self.expected_percent),
                "schedule": self.schedule.source, "started_at": self.schedule.started_at.isoformat(),
                "ends_at": self.schedule.ends_at.isoformat(), "verdict": self.verdict}


def schedule_for(started_at: datetime, latest_due: datetime | None, estimated_hours: int | None,
                 lesson_minutes: int | None) -> Schedule | None:
    """The course's schedule for a student who started at ``started_at`` (see the module's
    docstring), or None when the course gives nothing to build one from."""
    if latest_due is not None and latest_due > started_at:
        return Schedule(started_at, latest_due, "due_dates")
    hours, source = None, None
    if estimated_hours:
        hours, source = Decimal(estimated_hours), "estimated_hours"
    elif lesson_minutes:
        hours, source = Decimal(lesson_minutes) / 60, "lesson_minutes"
    if hours is None:
        return None
    weeks = hours / STUDY_HOURS_PER_WEEK
    return Schedule(started_at, started_at + timedelta(days=float(weeks * 7)), source)


def pace_of(lessons_done: int, lessons_total: int, schedule: Schedule, now: datetime) -> Pace:
    done = HUNDRED * lessons_done / lessons_total
    length = (schedule.ends_at - schedule.started_at).total_seconds()
    elapsed = (now - schedule.started_at).total_seconds()
    share = Decimal(0) if length <= 0 else Decimal(str(min(max(elapsed / length, 0.0), 1.0)))
    return Pace(lessons_done, lessons_total, done.quantize(CENT, rounding=ROUND_HALF_UP),
                (HUNDRED * share).quantize(CENT, rounding=ROUND_HALF_UP), schedule)


def _course_facts(user_id: uuid.UUID, course_id: uuid.UUID):
    """One statement: the course's grading and length, the student's enrolment and first lesson
    opened, the latest due date (with this student's extensions) and the lessons' minutes."""
    extended = cast(Assignment.extensions[str(user_id)].astext, DateTime(timezone=True))
    latest_assignment = (select(func.max(func.coalesce(extended, Assignment.due_at)))
                         .where(Assignment.course_id == course_id, Assignment.published.is_(True))
                         .scalar_subquery())
    latest_quiz = (select(func.max(Quiz.closes_at))
                   .where(Quiz.course_id == course_id, Quiz.published.is_(True))
                   .scalar_subquery())
    first_view = (select(func.min(Progress.first_viewed_at))
                  .where(Progress.user_id == user_id, Progress.course_id == course_id).scalar_subquery())
    minutes = select(func.sum(Lesson.estimated_minutes)).where(Lesson.course_id == course_id).scalar_subquery()
    return db.session.execute(
        select(Course.grading, Course.estimated_hours, Enrollment.created_at.label("enrolled_at"),
               Enrollment.status.label("enrollment_status"), first_view.label("first_view"),
               func.greatest(latest_assignment, latest_quiz).label("latest_due"),
               minutes.label("lesson_minutes"))
        .select_from(Course)
        .outerjoin(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == user_id))
        .where(Course.id == course_id)
    ).first()


# ---------------------------------------------------------------------------------- refresh


def _lock(user_id: uuid.UUID, course_id: uuid.UUID) -> None:
    """Serialise refreshes of one student's insights for one course (two events at once would
    otherwise both delete the old set and both insert a new one)."""
    db.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": f"learning-insights:{user_id}:{course_id}"})


def refresh_insights(user_id: uuid.UUID, course_id: uuid.UUID, *, now: datetime | None = None) -> list[LearningInsight]:
    """Recompute the student's insights for the course and replace the stored ones (delete and
    insert, in the caller's transaction). A student not enrolled (or who left) keeps none.
    Returns the new insights: weak topics weakest first, then strong ones, then pace."""
    now = now or base.utcnow()
    _lock(user_id, course_id)
    facts = _course_facts(user_id, course_id)
    db.session.execute(delete(LearningInsight).where(LearningInsight.user_id == user_id,
                                                     LearningInsight.course_id == course_id),
                       execution_options={"synchronize_session": False})
    if facts is None or facts.enrolled_at is None or facts.enrollment_status == EnrollmentStatus.LEFT:
        return []
    topics = topic_stats(user_id, course_id, facts.grading)
    insights: list[LearningInsight] = []
    for topic in sorted((t for t in topics if t.weak), key=lambda t: (t.mastery, t.position)):
        insights.append(LearningInsight(user_id=user_id, course_id=course_id, kind=InsightKind.WEAK_TOPIC,
                                        module_id=topic.module_id, score=topic.mastery,
                                        summary=topic_summary(topic), basis=topic.basis(), computed_at=now))
    for topic in sorted((t for t in topics if t.strong), key=lambda t: (-t.mastery, t.position)):
        insights.append(LearningInsight(user_id=user_id, course_id=course_id, kind=InsightKind.STRONG_TOPIC,
                                        module_id=topic.module_id, score=topic.mastery,
                                        summary=topic_summary(topic), basis=topic.basis(), computed_at=now))
    lessons_total = sum(t.lessons_total for t in topics)
    started = min(filter(None, (facts.enrolled_at, facts.first_view)))
    schedule = schedule_for(started, facts.latest_due, facts.estimated_hours, facts.lesson_minutes)
    if lessons_total and schedule is not None:
        pace = pace_of(sum(t.lessons_done for t in topics), lessons_total, schedule, now)
        insights.append(LearningInsight(user_id=user_id, course_id=course_id, kind=InsightKind.PACE, module_id=None,
                                        score=pace.score, summary=pace.summary(), basis=pace.basis(),
                                        computed_at=now))
    if insights:
        db.session.add_all(insights)
        db.session.flush()
    return insights


# ---------------------------------------------------------------------------------- reading


@dataclass
class CourseInsights:
    """A course's insights as the pages show them."""

    course_id: uuid.UUID
    course_title: str
    course_slug: str
    weak: list[LearningInsight]
    strong: list[LearningInsight]
    pace: LearningInsight | None

    @property
    def empty(self) -> bool:
        return not (self.weak or self.strong or self.pace)


def basis_text(insight: LearningInsight) -> str:
    """What an insight rests on, for people: "based on 9 quiz answers, 1 graded assignment,
    2 of 5 lessons"."""
    basis = insight.basis or {}
    if insight.kind == InsightKind.PACE:
        source = {"due_dates": "the course's latest due date", "estimated_hours": "the course's estimated hours",
                  "lesson_minutes": "the lessons' estimated minutes"}.get(basis.get("schedule"), "the course schedule")
        total = basis.get("lessons_total", 0)
        return f"based on {basis.get('lessons_done', 0)} of {total} lesson{'s' if total != 1 else ''} and {source}"
    parts = []
    answers = basis.get("quiz_answers", 0)
    if answers:
        parts.append(f"{answers} quiz answer{'s' if answers != 1 else ''}")
    graded = basis.get("graded_assignments", 0)
    if graded:
        parts.append(f"{graded} graded assignment{'s' if graded != 1 else ''}")
    total = basis.get("lessons_total", 0)
    parts.append(f"{basis.get('lessons_done', 0)} of {total} lesson{'s' if total != 1 else ''}")
    return "based on " + ", ".join(parts)


#: ``course_insights``' statement, built once (it is on every student dashboard).
_COURSE_INSIGHTS = (
    select(LearningInsight, Course.title, Course.slug)
    .join(Course, Course.id == LearningInsight.course_id)
    .where(LearningInsight.user_id == bindparam("user"),
           LearningInsight.course_id.in_(bindparam("courses", expanding=True)))
    .order_by(LearningInsight.course_id, LearningInsight.kind, LearningInsight.score, LearningInsight.id)
)


def course_insights(user_id: uuid.UUID, course_ids: list[uuid.UUID]) -> list[CourseInsights]:
    """The student's insights for the given courses, grouped per course in the order given:
    one statement whatever the number of courses and insights."""
    if not course_ids:
        return []
    rows = db.session.execute(_COURSE_INSIGHTS, {"user": user_id, "courses": list(course_ids)}).all()
    grouped: dict[uuid.UUID, CourseInsights] = {}
    for insight, title, slug in rows:
        entry = grouped.get(insight.course_id)
        if entry is None:
            entry = grouped[insight.course_id] = CourseInsights(insight.course_id, title, slug, [], [], None)
        if insight.kind == InsightKind.WEAK_TOPIC:
            entry.weak.append(insight)
        elif insight.kind == InsightKind.STRONG_TOPIC:
            entry.strong.insert(0, insight)  # rows come lowest score first: strongest first
        else:
            entry.pace = insight
    return [grouped[course_id] for course_id in course_ids if course_id in grouped]

